/** Server-Sent Events on /subscribe: framing, replay then live, consumer groups, reconnecting. */

import { expect, test } from "bun:test";
import type { Poke, Subscription } from "../lib/client";
import { event, forEachBackend } from "../lib/fixtures";

/** Runs `body` with an open subscription and closes it whatever happens. */
async function using<T>(subscription: Promise<Subscription>, body: (s: Subscription) => Promise<T>): Promise<T> {
  const opened = await subscription;
  try {
    return await body(opened);
  } finally {
    opened.close();
  }
}

const globals = (pokes: Poke[]) => pokes.map((p) => p.globalPosition);

forEachBackend((ctx) => {
  test("a poke is framed byte for byte as the protocol says", async () => {
    const { client } = await ctx.tenant();
    await using(client.subscribe({ stream: "frame-1" }), async (sub) => {
      expect(sub.response.headers.get("content-type")).toBe("text/event-stream");
      expect(sub.response.headers.get("cache-control")).toBe("no-cache");
      expect(sub.response.headers.get("access-control-allow-origin")).toBe("*");
      await sub.ready();
      await client.write("frame-1", event(1));
      expect(await sub.next()).toEqual({ stream: "frame-1", position: 0, globalPosition: 1 });
      expect(sub.raw).toContain(': ready\n\nevent: poke\ndata: {"stream":"frame-1","position":0,"globalPosition":1}\n\n');
      expect(sub.raw).not.toContain("\r");
    });
  });

  test("a stream subscription replays existing messages, then goes live", async () => {
    const { client } = await ctx.tenant();
    for (let n = 0; n < 3; n++) await client.write("replay-1", event(n));
    await client.write("replay-2", event(9));
    await using(client.subscribe({ stream: "replay-1" }), async (sub) => {
      const replayed = await sub.take(3);
      expect(replayed.map((p) => p.position)).toEqual([0, 1, 2]);
      await client.write("replay-2", event(10));
      await client.write("replay-1", event(3));
      expect(await sub.next()).toEqual({ stream: "replay-1", position: 3, globalPosition: 6 });
      expect(await sub.drain(200)).toEqual([]);
    });
  });

  test("a stream subscription from a position skips what the client already has", async () => {
    const { client } = await ctx.tenant();
    for (let n = 0; n < 5; n++) await client.write("from-1", event(n));
    await using(client.subscribe({ stream: "from-1", position: 3 }), async (sub) => {
      expect((await sub.take(2)).map((p) => p.position)).toEqual([3, 4]);
      expect(await sub.drain(200)).toEqual([]);
    });
  });

  test("a category subscription pokes for every stream of the category from a global position", async () => {
    const { client } = await ctx.tenant();
    await client.write("cat-1", event(1));
    await client.write("dog-1", event(2));
    await client.write("cat-2", event(3));
    await using(client.subscribe({ category: "cat", position: 2 }), async (sub) => {
      expect(await sub.next()).toEqual({ stream: "cat-2", position: 0, globalPosition: 3 });
      await sub.ready();
      await client.write("dog-2", event(4));
      await client.write("cat-1", event(5));
      await client.write("catalog-1", event(6));
      expect(await sub.next()).toEqual({ stream: "cat-1", position: 1, globalPosition: 5 });
      expect(await sub.drain(200)).toEqual([]);
    });
  });

  test("consumer-group members are poked only for their own streams, replay and live", async () => {
    const { client } = await ctx.tenant();
    // Members of a group of 2: test-1, test-3 -> 0; test-2, test-4 -> 1 (MD5 of the cardinal id).
    await client.write("test-1", event(1));
    await client.write("test-2", event(2));
    await using(client.subscribe({ category: "test", consumer: 0, size: 2 }), async (zero) => {
      await using(client.subscribe({ category: "test", consumer: 1, size: 2 }), async (one) => {
        await zero.ready();
        await one.ready();
        for (const stream of ["test-3", "test-4", "test-1+retry", "test"]) await client.write(stream, event(0));
        expect((await zero.take(3)).map((p) => p.stream)).toEqual(["test-1", "test-3", "test-1+retry"]);
        expect((await one.take(2)).map((p) => p.stream)).toEqual(["test-2", "test-4"]);
        expect([...(await zero.drain(200)), ...(await one.drain(0))]).toEqual([]);
      });
    });
  });

  test("all=true pokes for every write in the namespace, existing ones first", async () => {
    const { client } = await ctx.tenant();
    await client.write("a-1", event(1));
    await client.write("b-1", event(2));
    await using(client.subscribe({ all: true }), async (sub) => {
      expect(globals(await sub.take(2))).toEqual([1, 2]);
      await client.write("c", event(3));
      expect(await sub.next()).toEqual({ stream: "c", position: 0, globalPosition: 3 });
    });
  });

  test("a consumer that reconnects from its next position misses nothing and repeats nothing", async () => {
    const { client } = await ctx.tenant();
    for (let n = 0; n < 3; n++) await client.write(`job-${n}`, event(n));
    let next = 1;
    await using(client.subscribe({ category: "job", position: next }), async (sub) => {
      const got = await sub.take(3);
      expect(globals(got)).toEqual([1, 2, 3]);
      next = got.at(-1)!.globalPosition + 1;
    });
    // Written while the consumer is away.
    for (let n = 3; n < 6; n++) await client.write(`job-${n}`, event(n));
    await using(client.subscribe({ category: "job", position: next }), async (sub) => {
      expect(globals(await sub.take(3))).toEqual([4, 5, 6]);
      await client.write("job-9", event(9));
      expect((await sub.next())!.globalPosition).toBe(7);
      expect(await sub.drain(200)).toEqual([]);
    });
  });

  test("the Authorization header works as well as ?token=", async () => {
    const { client } = await ctx.tenant();
    await client.write("hdr-1", event(1));
    await using(client.subscribe({ stream: "hdr-1" }, "header"), async (sub) => {
      expect(await sub.next()).toEqual({ stream: "hdr-1", position: 0, globalPosition: 1 });
    });
  });

  test("a burst of concurrent writes on a few hot streams reaches a live subscriber without loss", async () => {
    const { client } = await ctx.tenant();
    await using(client.subscribe({ category: "burst" }), async (sub) => {
      await sub.ready();
      const written = await Promise.all(Array.from({ length: 200 }, (_, n) => client.write(`burst-${n % 4}`, event(n))));
      const seen = new Set<number>();
      const deadline = Date.now() + 5_000;
      while (seen.size < written.length && Date.now() < deadline) {
        const poke = await sub.next(deadline - Date.now());
        if (poke === null) break;
        seen.add(poke.globalPosition);
      }
      // One poke per message while the client keeps up: none may be dropped, not even one
      // that a later poke of the same stream would cover.
      const missing = written.map((w) => w.globalPosition).filter((g) => !seen.has(g));
      expect(missing).toEqual([]);
    });
  });
});
