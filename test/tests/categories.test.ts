/** Category reads: ordering, paging, consumer groups and correlation. */

import { expect, test } from "bun:test";
import type { CategoryMessage, Client } from "../lib/client";
import { event, forEachBackend } from "../lib/fixtures";

const streamsOf = (messages: CategoryMessage[]) => messages.map((m) => m[1]);
const globals = (messages: CategoryMessage[]) => messages.map((m) => m[4]);

/** Consumer-group membership of these streams, fixed by the hash rule (MD5 of the cardinal id). */
const MEMBERS: [stream: string, size2: number, size4: number][] = [
  ["test-1", 0, 2],
  ["test-2", 1, 1],
  ["test-3", 0, 2],
  ["test-4", 1, 3],
  ["test-123", 1, 3],
  ["test-123+retry", 1, 3],
  ["test-", 0, 0],
];

async function writeAll(client: Client, streams: string[]): Promise<void> {
  for (const [n, stream] of streams.entries()) await client.write(stream, event(n));
}

forEachBackend((ctx) => {
  test("category.get returns 8-element messages of every stream, by global position", async () => {
    const { client } = await ctx.tenant();
    await writeAll(client, ["acct-1", "other-1", "acct-2", "acct-1", "acct", "acctx-1"]);
    const messages = await client.category("acct");
    expect(messages).toHaveLength(4);
    expect(messages[0]).toHaveLength(8);
    expect(streamsOf(messages)).toEqual(["acct-1", "acct-2", "acct-1", "acct"]);
    expect(globals(messages)).toEqual([1, 3, 4, 5]);
    expect(messages.map((m) => m[3])).toEqual([0, 0, 1, 0]);
    expect(messages[1]!.slice(2, 7)).toEqual(["Happened", 0, 3, { n: 2 }, null]);
  });

  test("category.get pages by global position and batch size", async () => {
    const { client } = await ctx.tenant();
    await writeAll(client, ["c-1", "d-1", "c-2", "c-3", "d-2", "c-4"]);
    expect(globals(await client.category("c", { position: 3 }))).toEqual([3, 4, 6]);
    expect(globals(await client.category("c", { globalPosition: 4, position: 1 }))).toEqual([4, 6]);
    expect(globals(await client.category("c", { batchSize: 2 }))).toEqual([1, 3]);
    expect(globals(await client.category("c", { position: 7 }))).toEqual([]);
    expect(globals(await client.category("", {}))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await client.category("c-1")).toEqual([]);
    expect(await client.category("nothing")).toEqual([]);
  });

  test("consumer-group members split a category by cardinal id, as the hash rule says", async () => {
    const { client } = await ctx.tenant();
    const streams = [...MEMBERS.map(([s]) => s), "test"];
    await writeAll(client, streams);
    for (const [size, column] of [
      [2, 1],
      [4, 2],
    ] as const) {
      const seen: string[] = [];
      for (let member = 0; member < size; member++) {
        const got = streamsOf(await client.category("test", { consumerGroup: { member, size } }));
        const expected = MEMBERS.filter((row) => row[column] === member).map(([s]) => s);
        expect(got).toEqual(expected);
        seen.push(...got);
      }
      // Every stream with an id is handled by exactly one member; `test` (no id) by none.
      expect(seen.sort()).toEqual(MEMBERS.map(([s]) => s).sort());
    }
    const unfiltered = await client.category("test", { consumerGroup: {} });
    expect(unfiltered).toHaveLength(streams.length);
  });

  test("the batch limit applies after the consumer-group filter", async () => {
    const { client } = await ctx.tenant();
    await writeAll(client, ["test-2", "test-1", "test-2", "test-3", "test-4", "test-1"]);
    const page = await client.category("test", { consumerGroup: { member: 0, size: 2 }, batchSize: 2 });
    expect(streamsOf(page)).toEqual(["test-1", "test-3"]);
    const next = await client.category("test", {
      consumerGroup: { member: 0, size: 2 },
      position: page.at(-1)![4] + 1,
    });
    expect(streamsOf(next)).toEqual(["test-1"]);
  });

  test("correlation keeps messages whose correlationStreamName is in that category", async () => {
    const { client } = await ctx.tenant();
    const write = (stream: string, metadata: Record<string, string> | undefined) =>
      client.write(stream, { type: "T", data: {}, ...(metadata ? { metadata } : {}) });
    await write("work-1", { correlationStreamName: "order-1" });
    await write("work-2", { correlationStreamName: "orders-1" });
    await write("work-3", undefined);
    await write("work-4", { correlationStreamName: "order" });
    await write("work-5", { correlationStreamName: "Order-5" });
    await write("work-6", { other: "order-6" });
    await write("other-1", { correlationStreamName: "order-7" });
    expect(streamsOf(await client.category("work", { correlation: "order" }))).toEqual(["work-1", "work-4"]);
    expect(streamsOf(await client.category("work", { correlation: "Order" }))).toEqual(["work-5"]);
    expect(streamsOf(await client.category("work", { correlation: "order-1" }))).toEqual([]);
    expect(await client.category("work", { correlation: "" })).toHaveLength(6);
  });

  test("ns.head is the last global position, settled, and a read up to it gets everything", async () => {
    const { client } = await ctx.tenant();
    expect(await client.call("ns.head")).toEqual({ globalPosition: 0, settled: true });
    await writeAll(client, ["h-1", "g-1", "h-2"]);
    const head = await client.call<{ globalPosition: number; settled: boolean }>("ns.head");
    expect(head).toEqual({ globalPosition: 3, settled: true });
    expect(globals(await client.category(""))).toEqual([1, 2, 3]);
  });

  test("correlation and consumer group combine", async () => {
    const { client } = await ctx.tenant();
    for (const stream of ["test-1", "test-2", "test-3", "test-4"]) {
      await client.write(stream, { type: "T", data: {}, metadata: { correlationStreamName: "flow-1" } });
      await client.write(stream, { type: "T", data: {} });
    }
    const got = await client.category("test", { correlation: "flow", consumerGroup: { member: 1, size: 2 } });
    expect(streamsOf(got)).toEqual(["test-2", "test-4"]);
    expect(got.every((m) => m[6] !== null)).toBe(true);
  });
});
