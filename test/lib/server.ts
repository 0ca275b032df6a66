/**
 * The real EventoDB server as a child process, on each backend the suite runs against.
 *
 * Nothing here imports the Python code: the server is started through its command line
 * (`python -m eventodb` from the repository's `.venv`, or `$EVENTODB_BIN`) and driven over
 * HTTP only, so this suite catches what a change on the Python side breaks.
 *
 * Backends (env `EVENTODB_TEST_BACKENDS`, comma list, default all three):
 * - `sqlite`    SQLite files in a temporary data directory, production auth;
 * - `postgres`  a database created for this run on `EVENTODB_TEST_DATABASE_URL` (default
 *               `postgres://postgres@127.0.0.1:5432/postgres`) and dropped at the end,
 *               production auth;
 * - `test-mode` `--test-mode`, everything in memory, relaxed auth.
 *
 * Without a reachable Postgres the `postgres` backend is skipped with one loud line, except
 * under `CI=true`, where the run fails.
 */

import { SQL } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ADMIN_TOKEN, Client } from "./client";

export const REPO = resolve(import.meta.dir, "..", "..");
export type Backend = "sqlite" | "postgres" | "test-mode";
const ALL_BACKENDS: Backend[] = ["sqlite", "postgres", "test-mode"];
const START_TIMEOUT_MS = 20_000;
const DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/** A directory removed when the suite ends. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `eventodb-bun-${prefix}-`));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const cleanups: (() => Promise<void>)[] = [];

/** Runs every registered clean-up (servers, databases, directories), newest first. */
export async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) {
    await cleanups.pop()!();
  }
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => done(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The command that starts the server: `$EVENTODB_BIN`, else the repository's venv Python. */
export function serverCommand(): string[] {
  const bin = process.env.EVENTODB_BIN;
  if (bin) return [bin];
  const python = process.env.EVENTODB_PYTHON ?? join(REPO, ".venv", "bin", "python");
  return [python, "-m", "eventodb"];
}

/** The environment for child processes: ours without EVENTODB_* (flags say what we mean). */
function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("EVENTODB_") && value !== undefined) env[key] = value;
  }
  return { ...env, ...extra };
}

export interface StartOptions {
  /** Server flags (the suite adds `--port`). */
  args: string[];
  /** Working directory; a fresh temporary one by default. */
  cwd?: string;
  env?: Record<string, string>;
}

/** A running server process with its log. */
export class Server {
  readonly url: string;
  readonly admin: Client;
  private exited: number | null = null;

  private constructor(
    readonly proc: Bun.Subprocess,
    readonly port: number,
    readonly logPath: string,
    readonly kind: string,
    readonly args: readonly string[],
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.admin = new Client(this.url, ADMIN_TOKEN);
    void proc.exited.then((code) => {
      this.exited = code;
    });
  }

  /** Starts the server and waits until `/health` answers 200. */
  static async start(kind: string, options: StartOptions): Promise<Server> {
    const port = await freePort();
    const cwd = options.cwd ?? tempDir(`cwd-${kind}`);
    const logPath = join(cwd, `server-${port}.log`);
    const log = Bun.file(logPath);
    const proc = Bun.spawn([...serverCommand(), ...options.args, `--port=${port}`], {
      cwd,
      env: childEnv(options.env),
      stdin: "ignore",
      stdout: log,
      stderr: log,
    });
    const server = new Server(proc, port, logPath, kind, options.args);
    await server.waitHealthy();
    return server;
  }

  private async waitHealthy(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exited !== null) {
        throw new Error(`server exited with ${this.exited}:\n${await this.output()}`);
      }
      try {
        const response = await fetch(`${this.url}/health`);
        if (response.status === 200) return;
      } catch {
        // not listening yet
      }
      await Bun.sleep(50);
    }
    this.proc.kill("SIGKILL");
    throw new Error(`server did not become healthy:\n${await this.output()}`);
  }

  /** The value of `--db-url` it was started with, if any. */
  get dbUrl(): string | undefined {
    const at = this.args.indexOf("--db-url");
    return at >= 0 ? this.args[at + 1] : undefined;
  }

  async output(): Promise<string> {
    return Bun.file(this.logPath).text();
  }

  /** The token printed under `DEFAULT NAMESPACE TOKEN:` at start-up. */
  async bannerToken(): Promise<string> {
    const lines = (await this.output()).split("\n");
    return lines[lines.indexOf("DEFAULT NAMESPACE TOKEN:") + 1]!;
  }

  /** SIGTERM, then the exit code (SIGKILL after 20 s). */
  async stop(): Promise<number> {
    if (this.exited === null) {
      this.proc.kill("SIGTERM");
      const timer = setTimeout(() => this.proc.kill("SIGKILL"), 20_000);
      await this.proc.exited;
      clearTimeout(timer);
    }
    return this.proc.exitCode ?? -1;
  }

  /** Stops and fails loudly unless the server exited cleanly (0). */
  async stopCleanly(): Promise<void> {
    const code = await this.stop();
    if (code !== 0) {
      throw new Error(`${this.kind} server exited with ${code}:\n${await this.output()}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Postgres

/** The admin URL the suite creates its databases on. */
export function postgresAdminUrl(): string {
  return process.env.EVENTODB_TEST_DATABASE_URL || DEFAULT_PG_URL;
}

/** The URL with another database name. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

async function postgresProblem(): Promise<string | null> {
  const sql = new SQL(postgresAdminUrl(), { max: 1, connectionTimeout: 5 });
  try {
    await sql`SELECT 1`;
    return null;
  } catch (error) {
    return String(error);
  } finally {
    await sql.close();
  }
}

/**
 * A fresh, uniquely named UTF-8 database (dropped when the suite ends); its URL.
 *
 * An ICU collation is used where the server has one, so that a query forgetting to compare by
 * code point sorts differently from SQLite and a listing test notices.
 */
export async function createDatabase(label: string): Promise<string> {
  const name = `eventodb_bun_${label}_${process.pid}_${Math.random().toString(16).slice(2, 10)}`;
  const admin = new SQL(postgresAdminUrl(), { max: 1 });
  try {
    try {
      await admin.unsafe(
        `CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'` +
          ` LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`,
      );
    } catch {
      await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'`);
    }
  } finally {
    await admin.close();
  }
  cleanups.push(async () => {
    const dropper = new SQL(postgresAdminUrl(), { max: 1 });
    try {
      await dropper.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } finally {
      await dropper.close();
    }
  });
  return withDatabase(postgresAdminUrl(), name);
}

// ---------------------------------------------------------------------------------------------
// Which backends run

function requestedBackends(): Backend[] {
  const wanted = process.env.EVENTODB_TEST_BACKENDS;
  if (!wanted) return ALL_BACKENDS;
  const names = wanted.split(",").map((name) => name.trim());
  for (const name of names) {
    if (!ALL_BACKENDS.includes(name as Backend)) {
      throw new Error(`EVENTODB_TEST_BACKENDS: unknown backend '${name}'`);
    }
  }
  return names as Backend[];
}

async function availableBackends(): Promise<{ run: Backend[]; skipped: string | null }> {
  const wanted = requestedBackends();
  if (!wanted.includes("postgres")) return { run: wanted, skipped: null };
  const problem = await postgresProblem();
  if (problem === null) return { run: wanted, skipped: null };
  const message = `Postgres tests NOT RUN: nothing usable at ${redact(postgresAdminUrl())} (${problem})`;
  if (process.env.CI?.toLowerCase() === "true") {
    throw new Error(`${message} and CI=true`);
  }
  return { run: wanted.filter((b) => b !== "postgres"), skipped: message };
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

const availability = await availableBackends();
/** The backends this run covers. */
export const BACKENDS: readonly Backend[] = availability.run;
/** Why Postgres was skipped, printed loudly at the end; null when it ran or was not asked for. */
export const POSTGRES_SKIPPED: string | null = availability.skipped;

// ---------------------------------------------------------------------------------------------
// Shared servers: one per backend for the whole run (tests keep to their own namespaces)

const shared = new Map<Backend, Promise<Server>>();

/** The flags that put a server on `backend`, with the admin token. */
export async function backendArgs(backend: Backend): Promise<string[]> {
  const base = [`--token=${ADMIN_TOKEN}`];
  switch (backend) {
    case "sqlite":
      return [...base, `--data-dir=${join(tempDir("data"), "data")}`];
    case "postgres":
      return [...base, "--db-url", await createDatabase("shared")];
    case "test-mode":
      return [...base, "--test-mode"];
  }
}

/** The shared server of `backend`, started on first use and stopped when the suite ends. */
export function sharedServer(backend: Backend): Promise<Server> {
  let server = shared.get(backend);
  if (server === undefined) {
    server = (async () => {
      const started = await Server.start(backend, { args: await backendArgs(backend) });
      cleanups.push(() => started.stopCleanly());
      return started;
    })();
    shared.set(backend, server);
  }
  return server;
}

/** Registers a clean-up step run when the suite ends. */
export function atEnd(step: () => Promise<void>): void {
  cleanups.push(step);
}
