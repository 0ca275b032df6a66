/**
 * Migration compatibility: storage left by the EventoDB Go server (0.7) opens and serves.
 *
 * The fixtures `tests/fixtures/eventodb_go_0_7_*.sql` (shared with the Python tests) describe the Go server's layout (registry plus one
 * SQLite file or Postgres schema per namespace, its migrations 001 and 002 applied, SQLite times
 * in whole seconds). The suite builds such storage, starts our server on it, and checks that
 * every message is served as it was written, that writing continues where the Go server
 * stopped, and that a restart changes nothing.
 */

import { SQL } from "bun";
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { ADMIN_TOKEN, Client } from "../lib/client";
import { BACKENDS, createDatabase, REPO, Server, tempDir, type Backend } from "../lib/server";

const FIXTURES = join(REPO, "tests", "fixtures");
const LEGACY = "legacy";
const LEGACY_TOKEN = `ns_${Buffer.from(LEGACY).toString("base64url")}_${"ab".repeat(32)}`;
const CREATED_AT = 1714557600; // 2024-05-01T10:00:00Z

const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");
const fixture = (name: string) => Bun.file(join(FIXTURES, name)).text();

/** The legacy namespace's messages: [id, stream, type, position, global position, data, metadata, time]. */
const MESSAGES = [
  ["6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e001", "account-1", "Opened", 0, 1, { n: 1 }, null, "2024-05-01T10:00:00Z"],
  ["6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e002", "account-1", "Deposited", 1, 2, { amount: 10 }, { correlationStreamName: "transfer-9" }, "2024-05-01T10:00:01Z"],
  ["6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e003", "account-2", "Opened", 0, 3, {}, null, "2024-05-01T10:00:02Z"],
  // Global position 4 is a gap (a failed insert in the Go server).
  ["6f2d2f1c-5a59-4a53-9c6a-38c1e1c5e005", "order-7", "Placed", 0, 5, { total: 99 }, {}, "2024-05-01T10:00:03Z"],
] as const;

/**
 * How the Go server recorded a namespace file in the registry: the path it opened,
 * `<data-dir>/<id>.db`, absolute or relative to its working directory, as its `--data-dir` was.
 */
type DbPathStyle = "absolute" | "relative";

/** A Go-server data directory `<root>/data` with `default` and `legacy`; the directory. */
function buildSqliteDataDir(root: string, registrySql: string, namespaceSql: string, style: DbPathStyle): string {
  const dir = join(root, "data");
  const dbPath = (id: string) => (style === "absolute" ? join(dir, `${id}.db`) : join("data", `${id}.db`));
  mkdirSync(dir);
  const registry = new Database(join(dir, "metadata.db"), { create: true });
  registry.exec("PRAGMA journal_mode = WAL");
  registry.exec(registrySql);
  const insert = registry.prepare(
    "INSERT INTO namespaces (id, token_hash, db_path, description, created_at, metadata) VALUES (?, ?, ?, ?, ?, '{}')",
  );
  insert.run("default", sha256(ADMIN_TOKEN), dbPath("default"), "Default namespace", CREATED_AT);
  insert.run(LEGACY, sha256(LEGACY_TOKEN), dbPath(LEGACY), "Written by the Go server", CREATED_AT);
  registry.close();
  const namespace = new Database(join(dir, `${LEGACY}.db`), { create: true });
  namespace.exec("PRAGMA journal_mode = WAL");
  namespace.exec(namespaceSql);
  const message = namespace.prepare(
    "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  );
  for (const [id, stream, type, position, global, data, metadata, time] of MESSAGES) {
    const seconds = Date.parse(time) / 1000;
    message.run(id, stream, type, position, global, JSON.stringify(data), metadata && JSON.stringify(metadata), seconds);
  }
  namespace.close();
  return dir;
}

/** A Go-server Postgres database with `default` and `legacy`; its URL. */
async function buildPostgresDatabase(registrySql: string, namespaceSql: string): Promise<string> {
  const url = await createDatabase("upstream");
  const sql = new SQL(url, { max: 1 });
  try {
    await sql.unsafe(registrySql);
    for (const [id, token, description] of [
      ["default", ADMIN_TOKEN, "Default namespace"],
      [LEGACY, LEGACY_TOKEN, "Written by the Go server"],
    ] as const) {
      await sql.unsafe(namespaceSql.replaceAll("__SCHEMA__", `eventodb_${id}`));
      await sql`INSERT INTO eventodb_store.namespaces VALUES
        (${id}, ${sha256(token)}, ${`eventodb_${id}`}, ${description}, ${CREATED_AT}, '{}')`;
    }
    for (const [id, stream, type, position, global, data, metadata, time] of MESSAGES) {
      await sql`INSERT INTO eventodb_legacy.messages
        (id, stream_name, type, position, global_position, data, metadata, time)
        VALUES (${id}, ${stream}, ${type}, ${position}, ${global}, ${data}::jsonb,
                ${metadata}::jsonb, ${time.replace("T", " ").replace("Z", "")}::timestamp)`;
    }
    // The Go server's sequence stands where its last insert left it.
    await sql.unsafe("SELECT setval('eventodb_legacy.messages_global_position_seq', 5)");
  } finally {
    await sql.close();
  }
  return url;
}

/** Everything a user of the Go server's data must still find, through the wire protocol. */
async function expectServedAsWritten(server: Server): Promise<void> {
  const legacy = new Client(server.url, LEGACY_TOKEN);
  const listed = (await server.admin.listNamespaces()).find((n) => n.namespace === LEGACY);
  expect(listed).toEqual({
    namespace: LEGACY,
    description: "Written by the Go server",
    createdAt: "2024-05-01T10:00:00Z",
    messageCount: 4,
  });
  const asCategory = MESSAGES.map((m) => [...m]);
  expect(await legacy.category("", { batchSize: -1 })).toEqual(asCategory as never);
  expect(await legacy.get("account-1")).toEqual(
    MESSAGES.slice(0, 2).map(([id, , type, pos, global, data, metadata, time]) => [id, type, pos, global, data, metadata, time]) as never,
  );
  expect(await legacy.version("account-1")).toBe(1);
  expect((await legacy.last("account-1", { type: "Opened" }))![0]).toBe(MESSAGES[0][0]);
  expect((await legacy.category("account", { correlation: "transfer" })).map((m) => m[4])).toEqual([2]);
  // account-1 is member 0 and account-2 member 1 of a group of 2 (MD5 of the cardinal id).
  expect((await legacy.category("account", { consumerGroup: { member: 1, size: 2 } })).map((m) => m[1])).toEqual(["account-2"]);
  expect((await legacy.streams()).map((s) => [s.stream, s.version])).toEqual([
    ["account-1", 1],
    ["account-2", 0],
    ["order-7", 0],
  ]);
  const subscription = await legacy.subscribe({ stream: "account-1" });
  try {
    expect((await subscription.take(2)).map((p) => p.globalPosition)).toEqual([1, 2]);
  } finally {
    subscription.close();
  }
}

/** Writing continues where the Go server stopped: next stream position, next global position. */
async function expectWritesContinue(server: Server): Promise<void> {
  const legacy = new Client(server.url, LEGACY_TOKEN);
  const conflict = await legacy.fails("stream.write", "account-1", { type: "T", data: {} }, { expectedVersion: 0 });
  expect(conflict.details).toEqual({ expected: 0, actual: 1 });
  expect(await legacy.write("account-1", { type: "Withdrawn", data: { amount: 3 } }, { expectedVersion: 1 })).toEqual({
    position: 2,
    globalPosition: 6,
  });
  expect((await server.admin.write("fresh-1", { type: "T", data: {} })).position).toBe(0);
}

async function restarted(server: Server, args: string[]): Promise<Server> {
  await server.stopCleanly();
  return Server.start(`${server.kind}-again`, { args });
}

function upstreamScenario(backend: Backend, build: () => Promise<string[]>): void {
  if (!BACKENDS.includes(backend)) return;
  describe(`${backend} storage written by the Go server`, () => {
    let server: Server | undefined;
    afterAll(async () => {
      await server?.stopCleanly();
    });

    test("is upgraded at start-up and served as written, and survives a restart", async () => {
      const args = await build();
      server = await Server.start(backend, { args });
      await expectServedAsWritten(server);
      await expectWritesContinue(server);
      server = await restarted(server, args);
      const legacy = new Client(server.url, LEGACY_TOKEN);
      expect((await legacy.get("account-1")).map((m) => [m[1], m[2], m[3]])).toEqual([
        ["Opened", 0, 1],
        ["Deposited", 1, 2],
        ["Withdrawn", 2, 6],
      ]);
      expect((await legacy.write("order-7", { type: "Paid", data: {} })).globalPosition).toBe(7);
    }, 60_000);
  });
}

async function sqliteDataDir(style: DbPathStyle): Promise<{ root: string; dir: string }> {
  const root = tempDir("upstream-sqlite");
  const registry = await fixture("eventodb_go_0_7_sqlite_registry.sql");
  const namespace = await fixture("eventodb_go_0_7_sqlite_namespace.sql");
  return { root, dir: buildSqliteDataDir(root, registry, namespace, style) };
}

upstreamScenario("sqlite", async () => {
  const { dir } = await sqliteDataDir("absolute");
  return [`--data-dir=${dir}`, `--token=${ADMIN_TOKEN}`];
});

if (BACKENDS.includes("sqlite")) {
  describe("a Go server data directory", () => {
    test("opens after it was moved (restored or mounted elsewhere)", async () => {
      const { root, dir } = await sqliteDataDir("absolute");
      const moved = join(root, "restored");
      renameSync(dir, moved);
      const server = await Server.start("sqlite-moved", { args: [`--data-dir=${moved}`, `--token=${ADMIN_TOKEN}`] });
      try {
        await expectServedAsWritten(server);
        expect(readdirSync(moved).filter((f) => f.endsWith(".db")).sort()).toEqual(["default.db", "legacy.db", "metadata.db"]);
      } finally {
        await server.stopCleanly();
      }
    }, 30_000);

    test("opens when the Go server was given a relative --data-dir", async () => {
      const { root, dir } = await sqliteDataDir("relative");
      const server = await Server.start("sqlite-relative", { args: [`--data-dir=${dir}`, `--token=${ADMIN_TOKEN}`], cwd: root });
      try {
        await expectServedAsWritten(server);
      } finally {
        await server.stopCleanly();
      }
    }, 30_000);
  });
}

upstreamScenario("postgres", async () => {
  const url = await buildPostgresDatabase(
    await fixture("eventodb_go_0_7_postgres_registry.sql"),
    await fixture("eventodb_go_0_7_postgres_namespace.sql"),
  );
  return ["--db-url", url, `--token=${ADMIN_TOKEN}`];
});

if (BACKENDS.includes("postgres")) {
  test("after the upgrade, Message DB clients share the namespace schema with the server", async () => {
    const url = await buildPostgresDatabase(
      await fixture("eventodb_go_0_7_postgres_registry.sql"),
      await fixture("eventodb_go_0_7_postgres_namespace.sql"),
    );
    const server = await Server.start("postgres", { args: ["--db-url", url, `--token=${ADMIN_TOKEN}`] });
    const sql = new SQL(url, { max: 1 });
    try {
      const [version] = await sql`SELECT eventodb_legacy.message_store_version() AS v`;
      expect(version.v).toBe("1.3.0");
      const rows = await sql`SELECT position FROM eventodb_legacy.get_stream_messages('account-1', batch_size => 1)`;
      expect(rows.map((r: { position: string | number }) => Number(r.position))).toEqual([0]);
      const [written] = await sql`SELECT eventodb_legacy.write_message(
        gen_random_uuid()::varchar, 'account-2', 'FromSql', '{"via": "sql"}'::jsonb) AS position`;
      expect(Number(written.position)).toBe(1);
      const legacy = new Client(server.url, LEGACY_TOKEN);
      const last = await legacy.last("account-2");
      expect(last!.slice(1, 5)).toEqual(["FromSql", 1, 6, { via: "sql" }]);
      expect((await legacy.write("account-2", { type: "T", data: {} })).globalPosition).toBe(7);
    } finally {
      await sql.close();
      await server.stopCleanly();
    }
  }, 60_000);
}
