/** NDJSON import over /import, and the export/import commands round-tripping a namespace. */

import { expect, test } from "bun:test";
import { join } from "node:path";
import type { CategoryMessage, Client, ImportEvent } from "../lib/client";
import { event, forEachBackend } from "../lib/fixtures";
import { serverCommand, tempDir } from "../lib/server";

interface Record_ {
  id: string;
  stream: string;
  type: string;
  pos: number;
  gpos: number;
  data: Record<string, unknown>;
  meta: Record<string, unknown> | null;
  time: string;
}

function record(gpos: number, stream: string, pos: number, extra: Partial<Record_> = {}): Record_ {
  return {
    id: crypto.randomUUID(),
    stream,
    type: "Imported",
    pos,
    gpos,
    data: { gpos },
    meta: gpos % 2 === 0 ? { correlationStreamName: "flow-1" } : null,
    time: `2025-01-15T10:00:${String(gpos % 60).padStart(2, "0")}.123456Z`,
    ...extra,
  };
}

const ndjson = (records: unknown[]) => records.map((r) => JSON.stringify(r)).join("\n") + "\n";
const last = (events: ImportEvent[]) => events.at(-1);

/** Runs the `eventodb` command line with `args`; its exit code, stdout and stderr. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...serverCommand(), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

async function everything(client: Client): Promise<CategoryMessage[]> {
  return client.category("", { batchSize: -1 });
}

forEachBackend((ctx) => {
  test("an import keeps ids, positions, global positions and times, in batches of 1000", async () => {
    const { client } = await ctx.tenant();
    const records = Array.from({ length: 2500 }, (_, n) => record(n * 2 + 1, `imp-${n % 5}`, Math.floor(n / 5)));
    const events = await client.import(ndjson(records));
    expect(events.slice(0, -1)).toEqual([
      { imported: 1000, gpos: 1999 },
      { imported: 2000, gpos: 3999 },
    ]);
    expect(last(events)).toMatchObject({ done: true, imported: 2500 });
    expect((last(events) as { elapsed: string }).elapsed).toMatch(/^\d+\.\ds$/);
    const stored = await everything(client);
    expect(stored).toHaveLength(2500);
    const sample = stored[7]!;
    const original = records[7]!;
    expect(sample).toEqual([
      original.id,
      original.stream,
      original.type,
      original.pos,
      original.gpos,
      original.data as CategoryMessage[5],
      original.meta as CategoryMessage[6],
      original.time,
    ]);
    // New writes continue above every imported global position.
    expect((await client.write("imp-0", event(1))).globalPosition).toBeGreaterThan(4999);
  });

  test("imports send no pokes; a forced import empties the namespace and restarts at 1", async () => {
    const { client } = await ctx.tenant();
    await client.write("old-1", event(1));
    await client.write("old-1", event(2));
    const subscription = await client.subscribe({ all: true, position: 3 });
    try {
      // Once the newest existing message was poked, the replay is over: what follows is live.
      await client.write("old-1", event(3));
      expect(await subscription.next()).toMatchObject({ globalPosition: 3 });
      expect(last(await client.import(ndjson([record(10, "new-1", 0)])))).toMatchObject({ imported: 1 });
      expect(await subscription.drain(300)).toEqual([]);
    } finally {
      subscription.close();
    }
    expect(last(await client.import(ndjson([record(5, "new-1", 0)]), { force: true }))).toMatchObject({
      done: true,
      imported: 1,
    });
    expect((await everything(client)).map((m) => [m[1], m[4]])).toEqual([["new-1", 5]]);
    await client.import("", { force: true });
    expect(await everything(client)).toEqual([]);
    expect(await client.write("fresh-1", event(1))).toEqual({ position: 0, globalPosition: 1 });
  });

  test("bad lines end the import with an error event naming the line; earlier batches stay", async () => {
    const { client } = await ctx.tenant();
    const good = Array.from({ length: 1000 }, (_, n) => record(n + 1, "ok-1", n));
    const cases: [string, string, number][] = [
      ["{nope", "INVALID_JSON", 3],
      [JSON.stringify({ ...record(9001, "x-1", 0), time: "yesterday" }), "INVALID_RECORD", 3],
      [JSON.stringify({ ...record(9001, "x-1", 0), id: undefined }), "INVALID_RECORD", 3],
      [JSON.stringify({ ...record(9001, "x-1", 0), data: [1] }), "INVALID_RECORD", 3],
      [JSON.stringify(record(1, "x-1", 0)), "POSITION_EXISTS", 3],
    ];
    expect(last(await client.import(ndjson(good)))).toMatchObject({ done: true, imported: 1000 });
    for (const [bad, code, line] of cases) {
      const body = `${JSON.stringify(record(5000, "y-1", 0))}\n\n${bad}\n${JSON.stringify(record(5001, "y-1", 1))}\n`;
      const events = await client.import(body, {});
      expect([bad, last(events)]).toEqual([bad, expect.objectContaining({ error: code, line })]);
      expect(String((last(events) as { message: string }).message)).not.toBe("");
      // The failing batch was not committed: y-1 does not exist, ok-1 is intact.
      expect(await client.get("y-1")).toEqual([]);
    }
    expect(await client.get("ok-1", { batchSize: -1 })).toHaveLength(1000);
    const longLine = JSON.stringify(record(7000, "big-1", 0, { data: { pad: "x".repeat(1024 * 1024) } }));
    const tooLong = await client.import(`${JSON.stringify(record(6999, "big-0", 0))}\n${longLine}\n`);
    expect(last(tooLong)).toMatchObject({ error: "READ_ERROR", line: 2 });
  });

  test("export and import commands round-trip a namespace exactly", async () => {
    const source = await ctx.tenant();
    const target = await ctx.tenant();
    await source.client.write("acct-1", { type: "Opened", data: { big: 1, s: "ünï" }, metadata: { correlationStreamName: "x-1" } });
    await source.client.write("acct-1", { type: "Deposited", data: { amount: 10 } });
    await source.client.write("other-1", { type: "T", data: {}, metadata: {} });
    await source.client.write("acct-2", { type: "Opened", data: {} });
    const dir = tempDir("export");
    const file = join(dir, "backup.ndjson.gz");
    const exported = await cli(["export", "--url", ctx.server().url, "--token", source.token, "--gzip", "--output", file]);
    expect(exported.code).toBe(0);
    expect(exported.stderr).toContain("Exported 4 messages (global positions up to 4)");
    const lines = Bun.gunzipSync(new Uint8Array(await Bun.file(file).arrayBuffer()));
    const records = new TextDecoder().decode(lines).trim().split("\n").map((l) => JSON.parse(l) as Record_);
    expect(records.map((r) => Object.keys(r))).toEqual(Array(4).fill(["id", "stream", "type", "pos", "gpos", "data", "meta", "time"]));
    expect(records.map((r) => r.gpos)).toEqual([1, 2, 3, 4]);
    const imported = await cli(["import", "--url", ctx.server().url, "--token", target.token, "--gzip", "--input", file]);
    expect([imported.code, imported.stderr]).toEqual([0, expect.stringContaining("Imported 4 messages in")]);
    expect(imported.stderr).toContain("Verified: 4 messages, last global position 4.");
    // Every field, times to the microsecond (the export keeps them unless --whole-seconds).
    expect(await everything(target.client)).toEqual(await everything(source.client));
    // Only some categories: the selection the command was asked for.
    const partial = await cli(["export", "--url", ctx.server().url, "--token", source.token, "--categories", "other"]);
    expect(partial.stdout.trim().split("\n").map((l) => (JSON.parse(l) as Record_).stream)).toEqual(["other-1"]);
  });

  test("the import command fails with the server's error and a non-zero exit", async () => {
    const { token } = await ctx.tenant();
    const dir = tempDir("bad-import");
    const file = join(dir, "bad.ndjson");
    await Bun.write(file, `${JSON.stringify(record(1, "a-1", 0))}\nnot json\n`);
    const result = await cli(["import", "--url", ctx.server().url, "--token", token, "--input", file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("INVALID_JSON");
    expect(result.stderr).toContain("(line 2)");
  });
});
