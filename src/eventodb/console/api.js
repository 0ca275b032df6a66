// Talking to the server: RPC calls, the SSE subscription, and the tokens this tab holds.
//
// The console uses only the public API (POST /rpc, GET /subscribe) with the token the user
// pasted. Tokens live in sessionStorage (gone when the tab closes) and travel only in the
// Authorization header: never in a URL, so never in a request log, a proxy log or the history.
// That is why /subscribe is read with fetch() and a streamed body instead of EventSource, which
// cannot send headers and would need ?token= in the URL.

const RPC_URL = "../rpc";
const SUBSCRIBE_URL = "../subscribe";
const KEYRING = "eventodb.console.tokens";

/** The namespace that administers the others. */
export const ADMIN_NAMESPACE = "default";

/** An error answered by the server (code and message of its error envelope), or a network one. */
export class RpcError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/**
 * The namespace a token names, or null when it is not an EventoDB token.
 * Tokens are ns_<base64url(namespace)>_<64 hex digits>, split at the last "_".
 */
export function namespaceOf(token) {
  if (!token.startsWith("ns_")) return null;
  const rest = token.slice(3);
  const cut = rest.lastIndexOf("_");
  if (cut < 0 || !/^[0-9a-fA-F]{64}$/.test(rest.slice(cut + 1))) return null;
  const encoded = rest.slice(0, cut);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded) || encoded.length % 4 === 1) return null;
  try {
    const base64 = encoded.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes) || null;
  } catch {
    return null;
  }
}

/** The tokens of this tab, by namespace (sessionStorage: never written to disk by us). */
export const keyring = {
  all() {
    try {
      return JSON.parse(sessionStorage.getItem(KEYRING) || "{}");
    } catch {
      return {};
    }
  },
  get(namespace) {
    return this.all()[namespace] ?? null;
  },
  set(namespace, token) {
    sessionStorage.setItem(KEYRING, JSON.stringify({ ...this.all(), [namespace]: token }));
  },
  remove(namespace) {
    const tokens = this.all();
    delete tokens[namespace];
    sessionStorage.setItem(KEYRING, JSON.stringify(tokens));
  },
  clear() {
    sessionStorage.removeItem(KEYRING);
  },
  namespaces() {
    return Object.keys(this.all()).sort();
  },
};

function headers(token) {
  return { Authorization: `Bearer ${token}` };
}

async function failure(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    return new RpcError(response.status, error.code, error.message, error.details);
  } catch {
    // /subscribe answers its query errors in plain text.
    return new RpcError(response.status, `HTTP ${response.status}`, text || response.statusText);
  }
}

function unreachable(error) {
  return new RpcError(0, "NETWORK", `Cannot reach the server (${error.message})`);
}

/** Call one RPC method; resolves to its result, rejects with an RpcError. */
export async function rpc(token, method, ...args) {
  let response;
  try {
    response = await fetch(RPC_URL, {
      method: "POST",
      headers: { ...headers(token), "Content-Type": "application/json" },
      body: JSON.stringify([method, ...args]),
      cache: "no-store",
    });
  } catch (error) {
    throw unreachable(error);
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Subscribe and yield what arrives: {ready: true} once the subscription is registered, then
 * one {stream, position, globalPosition} per poke. Returns when the server ends the stream;
 * rejects with an RpcError when it refuses the subscription or the connection breaks.
 *
 * @param {Record<string, string>} query the /subscribe parameters except the token
 * @param {AbortSignal} signal aborting it ends the subscription
 */
export async function* subscribe(token, query, signal) {
  let response;
  try {
    response = await fetch(`${SUBSCRIBE_URL}?${new URLSearchParams(query)}`, {
      headers: headers(token),
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (signal.aborted) return;
    throw unreachable(error);
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (signal.aborted) return;
        throw unreachable(error);
      }
      if (chunk.done) return;
      buffer += chunk.value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const parsed = parseEvent(event);
        if (parsed) yield parsed;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** One SSE event block: a poke, the ready comment, or nothing we care about (heartbeats). */
function parseEvent(block) {
  let name = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) {
      if (line.slice(1).trim() === "ready") return { ready: true };
    } else if (line.startsWith("event: ")) {
      name = line.slice(7);
    } else if (line.startsWith("data: ")) {
      data += line.slice(6);
    }
  }
  return name === "poke" && data ? JSON.parse(data) : null;
}
