/**
 * Error handling: every error code the server emits, with its HTTP status and envelope, and the
 * plain-text answers of /subscribe validation.
 */

import { SQL } from "bun";
import { expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { ADMIN_TOKEN, errorOf, type Client } from "../lib/client";
import { event, forEachBackend, unique } from "../lib/fixtures";
import { backendArgs, Server } from "../lib/server";

/** Posts a raw body and returns [status, code, message] of the error it must cause. */
async function rawError(client: Client, body: string, headers?: Record<string, string>) {
  const response = await client.post(body, headers);
  const error = await errorOf(response);
  return [error.status, error.code, error.text];
}

/** Sends raw HTTP bytes and returns the status code of the answer. */
function rawStatus(port: number, request: string): Promise<number> {
  return new Promise((done, fail) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    let reply = "";
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) {
        socket.destroy();
        done(Number(reply.split(" ")[1]));
      }
    });
    socket.on("error", fail);
  });
}

/** [request, exact message] pairs of argument validation; all are 400 INVALID_REQUEST. */
const INVALID_ARGUMENTS: [unknown[], string][] = [
  [["stream.write", "s-1"], "stream.write requires at least 2 arguments: streamName and message"],
  [["stream.write", "", { type: "T", data: {} }], "streamName must be a non-empty string"],
  [["stream.write", "s-1", []], "message must be an object"],
  [["stream.write", "s-1", { data: {} }], "message.type must be a non-empty string"],
  [["stream.write", "s-1", { type: "T" }], "message.data must be an object"],
  [["stream.write", "s-1", { type: "T", data: [1] }], "message.data must be an object"],
  [["stream.write", "s-1", { type: "T", data: {}, metadata: 3 }], "message.metadata must be an object"],
  [["stream.write", "s-1", { type: "T", data: {} }, null], "options must be an object"],
  [["stream.write", "s-1", { type: "T", data: {} }, { id: 5 }], "options.id must be a string"],
  [["stream.write", "s-1", { type: "T", data: {} }, { id: "nope" }], "options.id must be a UUID"],
  [["stream.write", "s-1", { type: "T", data: {} }, { expectedVersion: "1" }], "options.expectedVersion must be a number"],
  [["stream.get"], "stream.get requires at least 1 argument: streamName"],
  [["stream.get", 7], "streamName must be a non-empty string"],
  [["stream.get", "s-1", { position: null }], "options.position must be a number"],
  [["stream.get", "s-1", { globalPosition: true }], "options.globalPosition must be a number"],
  [["stream.get", "s-1", { batchSize: 10001 }], "options.batchSize must be <= 10000 or -1 for unlimited"],
  [["stream.last"], "stream.last requires at least 1 argument: streamName"],
  [["stream.last", "s-1", { type: 1 }], "options.type must be a string"],
  [["stream.version"], "stream.version requires 1 argument: streamName"],
  [["category.get"], "category.get requires at least 1 argument: categoryName"],
  [["category.get", null], "categoryName must be a string"],
  [["category.get", "c", { correlation: 1 }], "options.correlation must be a string"],
  [["category.get", "c", { consumerGroup: 1 }], "options.consumerGroup must be an object"],
  [["category.get", "c", { consumerGroup: { member: "0", size: 2 } }], "options.consumerGroup.member must be a number"],
  [["category.get", "c", { consumerGroup: { member: 0, size: "2" } }], "options.consumerGroup.size must be a number"],
  [["category.get", "c", { consumerGroup: { member: -1, size: 2 } }], "options.consumerGroup.member must be non-negative"],
  [["category.get", "c", { consumerGroup: { member: 0, size: 0 } }], "options.consumerGroup.size must be positive"],
  [["category.get", "c", { consumerGroup: { member: 2, size: 2 } }], "options.consumerGroup.member must be < size"],
  [["category.get", "c", { consumerGroup: { member: 0 } }], "options.consumerGroup requires both member and size"],
  [["ns.create"], "ns.create requires at least 1 argument: namespace ID"],
  [["ns.create", ""], "namespace ID must be a non-empty string"],
  [["ns.create", "x", { description: 1 }], "options.description must be a string"],
  [["ns.create", "x", { token: 1 }], "options.token must be a string"],
  [["ns.delete"], "ns.delete requires 1 argument: namespace ID"],
  [["ns.info"], "ns.info requires 1 argument: namespace ID"],
  [["ns.streams", { prefix: 1 }], "prefix must be a string"],
  [["ns.streams", { cursor: 1 }], "cursor must be a string"],
  [["ns.streams", { limit: "9" }], "limit must be a number"],
  [["ns.streams", { limit: 0 }], "limit must be between 1 and 1000"],
  [["ns.streams", { limit: 1001 }], "limit must be between 1 and 1000"],
];

/** [query, exact plain-text body] of /subscribe validation failures (400). */
const INVALID_SUBSCRIPTIONS: [string, string][] = [
  ["", "Either 'stream', 'category', or 'all=true' parameter required"],
  ["stream=", "Either 'stream', 'category', or 'all=true' parameter required"],
  ["all=true&stream=s-1", "Cannot combine 'all' with 'stream' or 'category'"],
  ["stream=s-1&category=s", "Cannot specify both 'stream' and 'category'"],
  ["stream=s-1&position=x", "Invalid position parameter"],
  ["category=c&consumer=x&size=2", "Invalid consumer parameter"],
  ["category=c&consumer=0&size=x", "Invalid size parameter"],
  ["category=c&consumer=2&size=2", "Invalid consumer group: member must be < size"],
  ["category=c&consumer=1&size=0", "Invalid consumer group: member must be < size"],
];

forEachBackend((ctx) => {
  test("argument validation answers 400 INVALID_REQUEST with the documented message", async () => {
    const { client } = await ctx.tenant();
    for (const [request, message] of INVALID_ARGUMENTS) {
      // ns.create and friends are admin calls: use the admin token so validation is reached.
      const caller = String(request[0]).startsWith("ns.") ? ctx.admin() : client;
      expect([request, ...(await rawError(caller, JSON.stringify(request)))]).toEqual([
        request,
        400,
        "INVALID_REQUEST",
        message,
      ]);
    }
    expect(await client.category("c")).toEqual([]); // nothing was written by any of them
    expect(await client.streams()).toEqual([]);
  });

  test("the request envelope is checked before the method", async () => {
    const { client } = await ctx.tenant();
    for (const [body, message] of [
      ["{", "Malformed JSON request"],
      ['{"a": 1}', "Malformed JSON request"],
      ['"stream.get"', "Malformed JSON request"],
      ["[]", "Missing method name"],
      ["null", "Missing method name"],
      ["[1]", "Method name must be a string"],
    ]) {
      expect([body, ...(await rawError(client, body!))]).toEqual([body, 400, "INVALID_REQUEST", message]);
    }
    const nested = "[".repeat(600) + "]".repeat(600);
    expect((await rawError(client, nested)).slice(0, 2)).toEqual([400, "INVALID_REQUEST"]);
  });

  test("unknown methods are METHOD_NOT_FOUND, unknown paths NOT_FOUND, GET /rpc 405", async () => {
    const { client } = await ctx.tenant();
    for (const method of ["ns.rotateToken", "stream.Get", "nope"]) {
      const error = await client.fails(method);
      expect([error.status, error.code]).toEqual([404, "METHOD_NOT_FOUND"]);
    }
    for (const path of ["/nope", "/rpc/", "/subscribe/stream/x"]) {
      const error = await errorOf(await fetch(`${ctx.server().url}${path}`));
      expect([path, error.status, error.code, error.text]).toEqual([path, 404, "NOT_FOUND", "Endpoint not found"]);
    }
    const get = await fetch(`${ctx.server().url}/rpc`, { headers: { Authorization: `Bearer ${client.token}` } });
    const error = await errorOf(get);
    expect([error.status, error.code, error.text]).toEqual([405, "INVALID_REQUEST", "Only POST method allowed"]);
  });

  test("namespace errors: NAMESPACE_EXISTS and NAMESPACE_NOT_FOUND", async () => {
    const tenant = await ctx.tenant();
    const exists = await ctx.admin().fails("ns.create", tenant.id);
    expect([exists.status, exists.code, exists.text]).toEqual([
      409,
      "NAMESPACE_EXISTS",
      `Namespace '${tenant.id}' already exists`,
    ]);
    const missing = unique("missing");
    for (const method of ["ns.info", "ns.delete"]) {
      const error = await ctx.admin().fails(method, missing);
      expect([error.status, error.code, error.text]).toEqual([404, "NAMESPACE_NOT_FOUND", `Namespace '${missing}' not found`]);
    }
    const wrongToken = await ctx.admin().fails("ns.create", unique(), { token: ADMIN_TOKEN });
    expect([wrongToken.status, wrongToken.code, wrongToken.text]).toEqual([
      400,
      "INVALID_REQUEST",
      expect.stringContaining("Token is for namespace 'default'"),
    ]);
  });

  test("a reused message id with other content is DUPLICATE_MESSAGE_ID", async () => {
    const { client } = await ctx.tenant();
    const id = crypto.randomUUID();
    await client.write("dup-1", event(1), { id });
    const error = await client.fails("stream.write", "dup-2", event(1), { id });
    expect([error.status, error.code, error.details]).toEqual([409, "DUPLICATE_MESSAGE_ID", { id, stream: "dup-1" }]);
    expect(await client.get("dup-2")).toEqual([]);
  });

  test("STREAM_VERSION_CONFLICT is 409 with the expected and actual versions", async () => {
    const { client } = await ctx.tenant();
    await client.write("v-1", event(1));
    const error = await client.fails("stream.write", "v-1", event(2), { expectedVersion: 5 });
    expect([error.status, error.code, error.text, error.details]).toEqual([
      409,
      "STREAM_VERSION_CONFLICT",
      "Expected version 5, stream is at version 0",
      { expected: 5, actual: 0 },
    ]);
  });

  test("a body declared larger than 100 MiB is refused with 413 before it is sent", async () => {
    const status = await rawStatus(
      ctx.server().port,
      `POST /rpc HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n` +
        `Content-Length: ${100 * 1024 * 1024 + 1}\r\n\r\n`,
    );
    expect(status).toBe(413);
  });

  test("/subscribe validation answers 400 in plain text", async () => {
    const { token } = await ctx.tenant();
    for (const [query, body] of INVALID_SUBSCRIPTIONS) {
      const response = await fetch(`${ctx.server().url}/subscribe?${query}&token=${token}`);
      expect([query, response.status, await response.text()]).toEqual([query, 400, body]);
      expect(response.headers.get("content-type")).toStartWith("text/plain");
    }
  });

  if (ctx.strictAuth) {
    test("authentication errors: AUTH_REQUIRED, AUTH_INVALID_TOKEN, AUTH_UNAUTHORIZED", async () => {
      const client = ctx.admin();
      const body = '["stream.get","s-1"]';
      expect(await rawError(client, body, {})).toEqual([401, "AUTH_REQUIRED", "Authorization header required"]);
      expect(await rawError(client, body, { Authorization: `Basic ${ADMIN_TOKEN}` })).toEqual([
        401,
        "AUTH_REQUIRED",
        "Authorization header must use Bearer scheme",
      ]);
      const malformed = await errorOf(await client.post(body, { Authorization: "Bearer garbage" }));
      expect([malformed.status, malformed.code, malformed.text, malformed.details]).toEqual([
        401,
        "AUTH_INVALID_TOKEN",
        "Invalid token format",
        { error: "invalid token format: missing 'ns_' prefix" },
      ]);
      const stranger = `ns_${Buffer.from(unique()).toString("base64url")}_${"0".repeat(64)}`;
      const unknown = await errorOf(await client.post(body, { Authorization: `Bearer ${stranger}` }));
      expect([unknown.status, unknown.code, unknown.text]).toEqual([
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
      ]);
      // Auth comes first, on every endpoint, also for /health's neighbours.
      for (const path of ["/rpc", "/subscribe?stream=s-1", "/import"]) {
        const error = await errorOf(await fetch(`${client.url}${path}`, { method: "POST" }));
        expect([path, error.status, error.code]).toEqual([path, 401, "AUTH_REQUIRED"]);
      }
      const ok = await client.as(undefined).call("sys.version").catch((e: unknown) => e);
      expect(ok).toMatchObject({ status: 401, code: "AUTH_REQUIRED" });
    });
  } else {
    test("test mode runs token-less calls as default and creates the namespace of an unknown token", async () => {
      const client = ctx.admin();
      const anonymous = client.as(undefined);
      const stream = unique("anon");
      await anonymous.write(`${stream}-1`, event(1));
      expect(await client.version(`${stream}-1`)).toBe(0); // it went to default
      const id = unique();
      const token = `ns_${Buffer.from(id).toString("base64url")}_${"1".repeat(64)}`;
      const response = await client.as(token).post('["stream.write","s-1",{"type":"T","data":{}}]');
      expect(response.status).toBe(200);
      expect(response.headers.get("x-eventodb-token")).toBe(token);
      expect((await client.namespaceInfo(id)).messageCount).toBe(1);
      await client.deleteNamespace(id);
      const deleted = await client.as(token).fails("stream.get", "s-1");
      expect([deleted.status, deleted.code]).toEqual([403, "AUTH_UNAUTHORIZED"]);
    });
  }
});

forEachBackend(
  (ctx) => {
    test("storage failures are BACKEND_ERROR, CLEAR_FAILED and IMPORT_FAILED, never a hang", async () => {
      const tenant = await ctx.tenant();
      await tenant.client.write("s-1", event(1));
      const sql = new SQL(ctx.server().dbUrl!, { max: 1 });
      try {
        await sql.unsafe(`DROP SCHEMA "eventodb_${tenant.id}" CASCADE`);
      } finally {
        await sql.close();
      }
      const requests: [string, ...unknown[]][] = [["stream.write", "s-1", event(2)], ["stream.get", "s-1"], ["category.get", "s"]];
      for (const [method, ...args] of requests) {
        const error = await tenant.client.fails(method, ...args);
        expect([method, error.status, error.code]).toEqual([method, 500, "BACKEND_ERROR"]);
        expect(error.text).toStartWith("Failed to ");
        expect(error.text).toContain(tenant.id);
      }
      const clear = await tenant.client.import("", { force: true }).then(
        () => null,
        (error: unknown) => error,
      );
      expect(clear).toMatchObject({ status: 500, code: "CLEAR_FAILED" });
      const record = { id: crypto.randomUUID(), stream: "s-1", type: "T", pos: 0, gpos: 1, data: {}, meta: null, time: "2025-01-01T00:00:00Z" };
      const events = await tenant.client.import(JSON.stringify(record));
      expect(events.at(-1)).toMatchObject({ error: "IMPORT_FAILED", line: 1 });
      // The namespace can still be deleted.
      expect((await ctx.admin().deleteNamespace(tenant.id)).namespace).toBe(tenant.id);
    });
  },
  ["postgres"],
);

test("SERVER_BUSY: beyond --max-connections a new connection is answered 503 with Retry-After", async () => {
  const server = await Server.start("sqlite-capped", {
    args: [...(await backendArgs("sqlite")), "--max-connections=2"],
  });
  const held: Socket[] = [];
  try {
    // Idle connections count too (this suite's own health checks may hold one): open them one
    // by one until the server refuses one, which it answers at once before closing it.
    let refusal = "";
    while (refusal === "" && held.length < 4) {
      let reply = "";
      const socket = await new Promise<Socket>((done, fail) => {
        const opened = connect(server.port, "127.0.0.1", () => done(opened));
        opened.on("error", fail);
      });
      socket.on("data", (chunk) => (reply += chunk.toString("latin1")));
      held.push(socket);
      await Bun.sleep(300);
      refusal = reply;
    }
    const [head = "", body = ""] = refusal.split("\r\n\r\n");
    expect(head).toStartWith("HTTP/1.1 503 ");
    expect(head.toLowerCase()).toContain("\r\nretry-after: 1");
    expect(JSON.parse(body)).toEqual({ error: { code: "SERVER_BUSY", message: "Too many open connections" } });
    for (const socket of held) socket.destroy();
    await Bun.sleep(300); // the slots are free again
    expect((await server.admin.call("sys.version")) as string).toBeString();
  } finally {
    for (const socket of held) socket.destroy();
    await server.stopCleanly();
  }
});
