/**
 * A small typed client for the EventoDB wire protocol: JSON-RPC over `POST /rpc`, Server-Sent
 * Events on `GET /subscribe`, NDJSON on `POST /import`. Written from the protocol description
 * (docs/API.md), not from the server's code.
 */

/** The well-known token of the `default` namespace that test servers are started with. */
export const ADMIN_TOKEN = `ns_ZGVmYXVsdA_${"0".repeat(64)}`;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** `[id, type, position, globalPosition, data, metadata, time]` */
export type StreamMessage = [string, string, number, number, JsonObject, JsonObject | null, string];
/** `[id, streamName, type, position, globalPosition, data, metadata, time]` */
export type CategoryMessage = [
  string,
  string,
  string,
  number,
  number,
  JsonObject,
  JsonObject | null,
  string,
];

export interface WriteResult {
  position: number;
  globalPosition: number;
}
export interface NewMessage {
  type: string;
  data: JsonObject;
  metadata?: JsonObject | null;
}
export interface WriteOptions {
  id?: string;
  expectedVersion?: number;
}
export interface StreamGetOptions {
  position?: number;
  globalPosition?: number;
  batchSize?: number;
}
export interface CategoryGetOptions {
  position?: number;
  globalPosition?: number;
  batchSize?: number;
  correlation?: string;
  consumerGroup?: { member?: number; size?: number };
}
export interface NamespaceCreated {
  namespace: string;
  token: string;
  createdAt: string;
}
export interface NamespaceInfo {
  namespace: string;
  description: string;
  createdAt: string;
  messageCount: number;
  streamCount: number;
  lastActivity: string | null;
}
export interface NamespaceSummary {
  namespace: string;
  description: string;
  createdAt: string;
  messageCount: number;
}
export interface StreamSummary {
  stream: string;
  version: number;
  lastActivity: string;
}
export interface CategorySummary {
  category: string;
  streamCount: number;
  messageCount: number;
}

/** An error envelope `{"error": {code, message, details?}}` with its HTTP status. */
export class EventoDBError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(`${status} ${code}: ${message}`);
  }
  get text(): string {
    return this.message.slice(this.message.indexOf(": ") + 2);
  }
}

/** Parses an error response, checking the envelope's shape on the way. */
export async function errorOf(response: Response): Promise<EventoDBError> {
  const contentType = response.headers.get("content-type");
  const body = await response.text();
  if (contentType !== "application/json") {
    throw new Error(`error without a JSON body (${response.status} ${contentType}): ${body}`);
  }
  const parsed = JSON.parse(body) as { error?: { code: string; message: string; details?: JsonObject } };
  const keys = Object.keys(parsed);
  if (keys.length !== 1 || parsed.error === undefined) {
    throw new Error(`not an error envelope: ${body}`);
  }
  const { code, message, details } = parsed.error;
  return new EventoDBError(response.status, code, message, details);
}

export interface SubscribeParams {
  stream?: string;
  category?: string;
  all?: boolean;
  position?: number;
  consumer?: number;
  size?: number;
}

/** The JSON of one `event: poke`. */
export interface Poke {
  stream: string;
  position: number;
  globalPosition: number;
}

/** One `data:` event of an `/import` answer. */
export type ImportEvent =
  | { imported: number; gpos: number }
  | { done: true; imported: number; elapsed: string }
  | { error: string; message: string; line?: number };

export class Client {
  constructor(
    readonly url: string,
    readonly token?: string,
  ) {}

  /** The same server with another token. */
  as(token: string | undefined): Client {
    return new Client(this.url, token);
  }

  private headers(): Record<string, string> {
    return this.token === undefined ? {} : { Authorization: `Bearer ${this.token}` };
  }

  /** `POST /rpc` with a raw body; the response as it came. */
  post(body: string, headers: Record<string, string> = this.headers()): Promise<Response> {
    return fetch(`${this.url}/rpc`, { method: "POST", body, headers });
  }

  /** Calls a method; the result, or an {@link EventoDBError}. */
  async call<T = Json>(method: string, ...args: unknown[]): Promise<T> {
    const response = await this.post(JSON.stringify([method, ...args]));
    if (response.status !== 200) throw await errorOf(response);
    if (response.headers.get("content-type") !== "application/json") {
      throw new Error(`RPC answer without JSON content type: ${response.headers.get("content-type")}`);
    }
    return (await response.json()) as T;
  }

  /** The error a call must fail with (throws if it succeeds). */
  async fails(method: string, ...args: unknown[]): Promise<EventoDBError> {
    try {
      const result = await this.call(method, ...args);
      throw new Error(`${method} succeeded with ${JSON.stringify(result)}`);
    } catch (error) {
      if (error instanceof EventoDBError) return error;
      throw error;
    }
  }

  write(stream: string, message: NewMessage, options?: WriteOptions): Promise<WriteResult> {
    return options === undefined
      ? this.call("stream.write", stream, message)
      : this.call("stream.write", stream, message, options);
  }
  get(stream: string, options: StreamGetOptions = {}): Promise<StreamMessage[]> {
    return this.call("stream.get", stream, options);
  }
  last(stream: string, options: { type?: string } = {}): Promise<StreamMessage | null> {
    return this.call("stream.last", stream, options);
  }
  version(stream: string): Promise<number | null> {
    return this.call("stream.version", stream);
  }
  category(name: string, options: CategoryGetOptions = {}): Promise<CategoryMessage[]> {
    return this.call("category.get", name, options);
  }
  createNamespace(id: string, options: { description?: string; token?: string } = {}): Promise<NamespaceCreated> {
    return this.call("ns.create", id, options);
  }
  deleteNamespace(id: string): Promise<{ namespace: string; deletedAt: string; messagesDeleted: number }> {
    return this.call("ns.delete", id);
  }
  listNamespaces(): Promise<NamespaceSummary[]> {
    return this.call("ns.list");
  }
  namespaceInfo(id: string): Promise<NamespaceInfo> {
    return this.call("ns.info", id);
  }
  streams(options: { prefix?: string; cursor?: string; limit?: number } = {}): Promise<StreamSummary[]> {
    return this.call("ns.streams", options);
  }
  categories(): Promise<CategorySummary[]> {
    return this.call("ns.categories");
  }

  /** Opens `/subscribe`; resolves once the response headers arrived. */
  async subscribe(params: SubscribeParams, via: "query" | "header" = "query"): Promise<Subscription> {
    const query = new URLSearchParams();
    if (params.stream !== undefined) query.set("stream", params.stream);
    if (params.category !== undefined) query.set("category", params.category);
    if (params.all) query.set("all", "true");
    if (params.position !== undefined) query.set("position", String(params.position));
    if (params.consumer !== undefined) query.set("consumer", String(params.consumer));
    if (params.size !== undefined) query.set("size", String(params.size));
    let headers: Record<string, string> = {};
    if (this.token !== undefined) {
      if (via === "query") query.set("token", this.token);
      else headers = this.headers();
    }
    const controller = new AbortController();
    const response = await fetch(`${this.url}/subscribe?${query}`, { headers, signal: controller.signal });
    if (response.status !== 200) {
      controller.abort();
      throw await errorOf(response);
    }
    return new Subscription(response, controller);
  }

  /** `POST /import` (with `?force=true` when asked); every event of the answer. */
  async import(ndjson: string, options: { force?: boolean } = {}): Promise<ImportEvent[]> {
    const response = await fetch(`${this.url}/import${options.force ? "?force=true" : ""}`, {
      method: "POST",
      body: ndjson,
      headers: { ...this.headers(), "Content-Type": "application/x-ndjson" },
    });
    if (response.status !== 200) throw await errorOf(response);
    const events: ImportEvent[] = [];
    for (const block of (await response.text()).split("\n\n")) {
      if (block === "") continue;
      if (!block.startsWith("data: ")) throw new Error(`import event without data: ${block}`);
      events.push(JSON.parse(block.slice("data: ".length)) as ImportEvent);
    }
    return events;
  }
}

/** An open `/subscribe` response, read event by event. */
export class Subscription {
  private readonly chunks: AsyncIterator<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffer = "";
  private pending: Promise<IteratorResult<Uint8Array>> | null = null;
  /** Every comment line seen so far (`: ready`, `: ping`). */
  readonly comments: string[] = [];
  /** The raw bytes of the stream so far, for framing checks. */
  raw = "";
  closed = false;

  constructor(
    readonly response: Response,
    private readonly controller: AbortController,
  ) {
    this.chunks = response.body![Symbol.asyncIterator]();
  }

  /** The next complete event block (without the blank line), or null on timeout. */
  private async nextBlock(timeoutMs: number): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.buffer.indexOf("\n\n");
      if (end >= 0) {
        const block = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        return block;
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      this.pending ??= this.chunks.next();
      const timer = Bun.sleep(left).then(() => "timeout" as const);
      const outcome = await Promise.race([this.pending, timer]);
      if (outcome === "timeout") return null;
      this.pending = null;
      if (outcome.done) {
        this.closed = true;
        continue;
      }
      const text = this.decoder.decode(outcome.value, { stream: true });
      this.raw += text;
      this.buffer += text;
    }
  }

  /** Waits for the `: ready` comment that says the subscription is registered. */
  async ready(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.comments.some((c) => c.includes("ready"))) {
      const block = await this.nextBlock(deadline - Date.now());
      if (block === null) throw new Error(`no ready comment within ${timeoutMs} ms: ${this.raw}`);
      this.record(block, true);
    }
  }

  private queued: Poke[] = [];

  /** Records a block: comments are kept aside, pokes are queued. */
  private record(block: string, queue: boolean): Poke | null {
    if (block.startsWith(":")) {
      this.comments.push(block);
      return null;
    }
    const lines = block.split("\n");
    if (lines.length !== 2 || lines[0] !== "event: poke" || !lines[1]!.startsWith("data: ")) {
      throw new Error(`not a poke: ${JSON.stringify(block)}`);
    }
    const poke = JSON.parse(lines[1]!.slice("data: ".length)) as Poke;
    if (queue) this.queued.push(poke);
    return poke;
  }

  /** The next poke, waiting at most `timeoutMs`; null if none came. */
  async next(timeoutMs = 5_000): Promise<Poke | null> {
    const queued = this.queued.shift();
    if (queued !== undefined) return queued;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const block = await this.nextBlock(deadline - Date.now());
      if (block === null) return null;
      const poke = this.record(block, false);
      if (poke !== null) return poke;
    }
  }

  /** Exactly `count` pokes (throws if they do not all arrive within `timeoutMs`). */
  async take(count: number, timeoutMs = 5_000): Promise<Poke[]> {
    const deadline = Date.now() + timeoutMs;
    const got: Poke[] = [];
    while (got.length < count) {
      const poke = await this.next(Math.max(0, deadline - Date.now()));
      if (poke === null) {
        throw new Error(`got ${got.length} of ${count} pokes: ${JSON.stringify(got)}`);
      }
      got.push(poke);
    }
    return got;
  }

  /** Every poke that arrives within `ms` (for "nothing more comes" checks). */
  async drain(ms: number): Promise<Poke[]> {
    const got: Poke[] = [];
    const deadline = Date.now() + ms;
    for (;;) {
      const poke = await this.next(Math.max(0, deadline - Date.now()));
      if (poke === null) return got;
      got.push(poke);
    }
  }

  close(): void {
    this.controller.abort();
    this.closed = true;
  }
}
