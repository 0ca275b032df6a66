/** Stream operations: write, get, last, version, and the listings that follow from them. */

import { expect, test } from "bun:test";
import { event, forEachBackend } from "../lib/fixtures";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z$/;
const WHOLE_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

forEachBackend((ctx) => {
  test("a write returns its stream position and the namespace's global position", async () => {
    const { client } = await ctx.tenant();
    expect(await client.write("account-1", event(1))).toEqual({ position: 0, globalPosition: 1 });
    expect(await client.write("account-1", event(2))).toEqual({ position: 1, globalPosition: 2 });
    expect(await client.write("account-2", event(3))).toEqual({ position: 0, globalPosition: 3 });
  });

  test("stream.get returns 7-element messages as written", async () => {
    const { client } = await ctx.tenant();
    const before = Date.now();
    await client.write("order-7", { type: "Placed", data: { items: [1, 2], note: "ünï €" } });
    await client.write("order-7", { type: "Paid", data: {}, metadata: { by: "x" } });
    await client.write("order-7", { type: "Shipped", data: {}, metadata: {} });
    const messages = await client.get("order-7");
    expect(messages).toHaveLength(3);
    const [first, second, third] = messages;
    expect(first).toHaveLength(7);
    expect(first!.slice(1, 6)).toEqual(["Placed", 0, 1, { items: [1, 2], note: "ünï €" }, null]);
    expect(second!.slice(1, 6)).toEqual(["Paid", 1, 2, {}, { by: "x" }]);
    expect(third!.slice(1, 6)).toEqual(["Shipped", 2, 3, {}, {}]);
    for (const message of messages) {
      expect(message[0]).toMatch(UUID_V7);
      expect(message[6]).toMatch(TIME);
      const written = Date.parse(message[6]);
      expect(written).toBeGreaterThanOrEqual(before - 1_000);
      expect(written).toBeLessThanOrEqual(Date.now() + 1_000);
    }
    expect(new Set(messages.map((m) => m[0])).size).toBe(3);
  });

  test("stream.get pages by position, global position and batch size", async () => {
    const { client } = await ctx.tenant();
    for (let n = 0; n < 5; n++) {
      await client.write("page-1", event(n));
      await client.write("other-1", event(n)); // interleaved: global positions 1,3,5,7,9
    }
    const positions = (ms: { 2: number }[]) => ms.map((m) => m[2]);
    expect(positions(await client.get("page-1", { position: 3 }))).toEqual([3, 4]);
    expect(positions(await client.get("page-1", { position: 1, batchSize: 2 }))).toEqual([1, 2]);
    expect(positions(await client.get("page-1", { globalPosition: 6 }))).toEqual([3, 4]);
    expect(positions(await client.get("page-1", { position: 9 }))).toEqual([]);
    expect(positions(await client.get("page-1", { position: -3 }))).toEqual([0, 1, 2, 3, 4]);
    expect(await client.get("page-1", { batchSize: 0 })).toEqual([]);
    expect(await client.get("page-1", { batchSize: -1 })).toHaveLength(5);
    expect(await client.get("nobody-1")).toEqual([]);
  });

  test("stream.last returns the newest message, optionally of one type", async () => {
    const { client } = await ctx.tenant();
    expect(await client.last("acct-1")).toBeNull();
    await client.write("acct-1", event(1, "Opened"));
    await client.write("acct-1", event(2, "Deposited"));
    await client.write("acct-1", event(3, "Deposited"));
    await client.write("acct-1", event(4, "Closed"));
    const last = await client.last("acct-1");
    expect(last!.slice(1, 5)).toEqual(["Closed", 3, 4, { n: 4 }]);
    const deposit = await client.last("acct-1", { type: "Deposited" });
    expect(deposit!.slice(1, 5)).toEqual(["Deposited", 2, 3, { n: 3 }]);
    expect(await client.last("acct-1", { type: "Missing" })).toBeNull();
    expect((await client.last("acct-1", { type: "" }))![2]).toBe(3);
  });

  test("stream.version is null for an empty stream and the last position otherwise", async () => {
    const { client } = await ctx.tenant();
    expect(await client.version("v-1")).toBeNull();
    await client.write("v-1", event(1));
    expect(await client.version("v-1")).toBe(0);
    await client.write("v-1", event(2));
    expect(await client.version("v-1")).toBe(1);
  });

  test("names without a dash, odd characters and explicit null metadata are accepted", async () => {
    const { client } = await ctx.tenant();
    await client.write("plain", event(1));
    await client.write("wëird name/with:stuff-ç+1", { type: "T", data: {}, metadata: null });
    expect((await client.get("plain"))[0]!.slice(1, 3)).toEqual(["Happened", 0]);
    const [odd] = await client.get("wëird name/with:stuff-ç+1");
    expect(odd![5]).toBeNull();
  });

  test("payload numbers and strings come back exactly", async () => {
    const { client } = await ctx.tenant();
    const body = '["stream.write","num-1",{"type":"T","data":{"big":123456789012345678901,"neg":-9007199254740993,"f":0.1,"s":"a\\u0000b"}}]';
    const written = await client.post(body);
    expect(written.status).toBe(400); // NUL is refused up front, on every backend
    const ok = '["stream.write","num-1",{"type":"T","data":{"big":123456789012345678901,"neg":-9007199254740993,"f":0.1}}]';
    expect((await client.post(ok)).status).toBe(200);
    const text = await (await client.post('["stream.get","num-1"]')).text();
    expect(text).toContain("123456789012345678901");
    expect(text).toContain("-9007199254740993");
    expect(text).toContain("0.1");
  });

  test("a client-chosen id is returned canonical, and an identical retry writes nothing", async () => {
    const { client } = await ctx.tenant();
    const id = "0190F5A4-1B2C-7D3E-8F40-5A6B7C8D9E0F";
    const first = await client.write("pay-1", event(1), { id });
    const retry = await client.write("pay-1", event(1), { id });
    expect(retry).toEqual(first);
    const messages = await client.get("pay-1");
    expect(messages).toHaveLength(1);
    expect(messages[0]![0]).toBe(id.toLowerCase());
    expect((await client.write("pay-1", event(2))).globalPosition).toBe(first.globalPosition + 1);
  });

  test("ns.streams lists streams by code point with prefix and cursor paging", async () => {
    const { client } = await ctx.tenant();
    const names = ["b-1", "a-2", "a-10", "A-1", "ä-1", "a_1", "a%1"];
    for (const name of names) await client.write(name, event(1));
    await client.write("a-2", event(2));
    const all = await client.streams();
    expect(all.map((s) => s.stream)).toEqual(["A-1", "a%1", "a-10", "a-2", "a_1", "b-1", "ä-1"]);
    expect(all.find((s) => s.stream === "a-2")!.version).toBe(1);
    for (const s of all) expect(s.lastActivity).toMatch(WHOLE_SECONDS);
    expect((await client.streams({ prefix: "a-" })).map((s) => s.stream)).toEqual(["a-10", "a-2"]);
    expect((await client.streams({ prefix: "a_" })).map((s) => s.stream)).toEqual(["a_1"]);
    const pages: string[] = [];
    let cursor = "";
    for (;;) {
      const page = await client.streams({ cursor, limit: 3 });
      if (page.length === 0) break;
      expect(page.length).toBeLessThanOrEqual(3);
      pages.push(...page.map((s) => s.stream));
      cursor = page.at(-1)!.stream;
    }
    expect(pages).toEqual(all.map((s) => s.stream));
  });

  test("ns.categories and ns.info count what was written", async () => {
    const tenant = await ctx.tenant();
    const { client } = tenant;
    const fresh = await client.namespaceInfo(tenant.id);
    expect([fresh.messageCount, fresh.streamCount, fresh.lastActivity]).toEqual([0, 0, null]);
    await client.write("account", event(1));
    await client.write("account-1", event(2));
    await client.write("account-1", event(3));
    await client.write("order-9", event(4));
    expect(await client.categories()).toEqual([
      { category: "account", streamCount: 2, messageCount: 3 },
      { category: "order", streamCount: 1, messageCount: 1 },
    ]);
    const info = await client.namespaceInfo(tenant.id);
    expect(info).toMatchObject({ namespace: tenant.id, messageCount: 4, streamCount: 3 });
    expect(info.lastActivity).toMatch(TIME);
  });

  test("sys.version and sys.health answer, as do /health and /version", async () => {
    const { client } = await ctx.tenant();
    const version = await client.call<string>("sys.version");
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    const health = await client.call<{ status: string; backend: string }>("sys.health");
    expect(health.status).toBe("ok");
    const expected = { sqlite: "sqlite", postgres: "postgres", "test-mode": "memory" }[ctx.backend];
    expect(health.backend).toBe(expected);
    const plain = await fetch(`${ctx.server().url}/health`);
    expect(plain.headers.get("content-type")).toBe("application/json");
    expect(await plain.json()).toEqual({ status: "ok" });
    expect(await (await fetch(`${ctx.server().url}/version`)).json()).toEqual({ version });
  });
});
