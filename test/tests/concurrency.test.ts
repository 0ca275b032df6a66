/** Concurrent writers and optimistic locking with expected versions. */

import { expect, test } from "bun:test";
import { EventoDBError } from "../lib/client";
import { event, forEachBackend } from "../lib/fixtures";

forEachBackend((ctx) => {
  test("100 concurrent writes to one stream get gapless, distinct positions", async () => {
    const { client } = await ctx.tenant();
    const results = await Promise.all(Array.from({ length: 100 }, (_, n) => client.write("hot-1", event(n))));
    expect(results.map((r) => r.position).sort((a, b) => a - b)).toEqual([...Array(100).keys()]);
    expect(new Set(results.map((r) => r.globalPosition)).size).toBe(100);
    const stored = await client.get("hot-1", { batchSize: -1 });
    expect(stored.map((m) => m[2])).toEqual([...Array(100).keys()]);
    // Each acknowledged write is stored at the position it was told.
    const byPosition = new Map(stored.map((m) => [m[2], m[4].n]));
    for (const [n, result] of results.entries()) expect(byPosition.get(result.position)).toBe(n);
  });

  test("concurrent writers on many streams and categories lose nothing", async () => {
    const { client } = await ctx.tenant();
    const writes = Array.from({ length: 120 }, (_, n) => client.write(`cat${n % 3}-${n % 7}`, event(n)));
    const results = await Promise.all(writes);
    const globals = results.map((r) => r.globalPosition).sort((a, b) => a - b);
    expect(new Set(globals).size).toBe(120);
    const everything = await client.category("", { batchSize: -1 });
    expect(everything).toHaveLength(120);
    expect(everything.map((m) => m[4])).toEqual(globals);
    for (let stream = 0; stream < 21; stream++) {
      const name = `cat${stream % 3}-${stream % 7}`;
      const positions = (await client.get(name)).map((m) => m[2]);
      expect(positions).toEqual([...Array(positions.length).keys()]);
    }
  });

  test("of 10 concurrent writes with the same expected version exactly one wins", async () => {
    const { client } = await ctx.tenant();
    await client.write("race-1", event(0));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, n) => client.write("race-1", event(n + 1), { expectedVersion: 0 })),
    );
    const won = outcomes.filter((o) => o.status === "fulfilled");
    const lost = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as EventoDBError] : []));
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(9);
    for (const error of lost) {
      expect(error).toBeInstanceOf(EventoDBError);
      expect([error.status, error.code]).toEqual([409, "STREAM_VERSION_CONFLICT"]);
      expect(error.details).toEqual({ expected: 0, actual: 1 });
    }
    expect(await client.version("race-1")).toBe(1);
  });

  test("expected versions: -1 means new, a stale version conflicts and writes nothing", async () => {
    const { client } = await ctx.tenant();
    expect(await client.write("acct-1", event(1), { expectedVersion: -1 })).toEqual({ position: 0, globalPosition: 1 });
    const again = await client.fails("stream.write", "acct-1", event(2), { expectedVersion: -1 });
    expect([again.code, again.text, again.details]).toEqual([
      "STREAM_VERSION_CONFLICT",
      "Expected version -1, stream is at version 0",
      { expected: -1, actual: 0 },
    ]);
    const fresh = await client.fails("stream.write", "acct-2", event(1), { expectedVersion: 0 });
    expect(fresh.details).toEqual({ expected: 0, actual: -1 });
    expect((await client.fails("stream.write", "acct-1", event(2), { expectedVersion: -2 })).code).toBe(
      "STREAM_VERSION_CONFLICT",
    );
    expect(await client.write("acct-1", event(2), { expectedVersion: 0 })).toEqual({ position: 1, globalPosition: 2 });
    expect(await client.get("acct-2")).toEqual([]);
    expect((await client.get("acct-1")).map((m) => m[4])).toEqual([{ n: 1 }, { n: 2 }]);
    // A fractional expected version is truncated toward zero, like every number argument.
    expect((await client.write("acct-1", event(3), { expectedVersion: 1.9 })).position).toBe(2);
  });
});
