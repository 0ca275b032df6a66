/**
 * How scenarios get a server and a namespace of their own.
 *
 * `forEachBackend` declares a scenario's tests once per backend; the servers are shared by the
 * whole run, and every test works in a fresh namespace (`ctx.tenant()`), deleted afterwards,
 * so tests never see each other's data.
 */

import { afterAll, beforeAll, describe } from "bun:test";
import { Client, type NamespaceCreated } from "./client";
import { BACKENDS, sharedServer, type Backend, type Server } from "./server";

/** A namespace created for one test, with a client holding its token. */
export interface Tenant {
  id: string;
  token: string;
  client: Client;
}

export interface BackendContext {
  backend: Backend;
  /** Production authentication (every backend but test mode). */
  strictAuth: boolean;
  /** The shared server of this backend (available inside tests and hooks). */
  server(): Server;
  /** A client with the admin token. */
  admin(): Client;
  /** A fresh namespace, deleted after the scenario's tests. */
  tenant(): Promise<Tenant>;
}

let counter = 0;

/** A name no other test uses: `<prefix>_<random>_<counter>`. */
export function unique(prefix = "t"): string {
  counter += 1;
  return `${prefix}_${Math.random().toString(36).slice(2, 8)}_${counter}`;
}

/** Creates a namespace with the admin client. */
export async function newTenant(admin: Client, id = unique()): Promise<Tenant> {
  const created: NamespaceCreated = await admin.createNamespace(id);
  return { id, token: created.token, client: admin.as(created.token) };
}

/**
 * Declares `body`'s tests once per backend of this run (or of `only`), each group inside a
 * `describe(<backend>)`.
 */
export function forEachBackend(body: (ctx: BackendContext) => void, only?: readonly Backend[]): void {
  for (const backend of BACKENDS) {
    if (only !== undefined && !only.includes(backend)) continue;
    describe(backend, () => {
      let server: Server | undefined;
      const created: string[] = [];
      beforeAll(async () => {
        server = await sharedServer(backend);
      }, 30_000);
      afterAll(async () => {
        for (const id of created) await server?.admin.call("ns.delete", id).catch(() => undefined);
      });
      const ctx: BackendContext = {
        backend,
        strictAuth: backend !== "test-mode",
        server() {
          if (server === undefined) throw new Error(`the ${backend} server is not started`);
          return server;
        },
        admin() {
          return ctx.server().admin;
        },
        async tenant() {
          const tenant = await newTenant(ctx.admin());
          created.push(tenant.id);
          return tenant;
        },
      };
      body(ctx);
    });
  }
}

/** A message type/data pair for tests that do not care about the content. */
export function event(n: number, type = "Happened"): { type: string; data: { n: number } } {
  return { type, data: { n } };
}

/** Polls `check` until it returns true (fails after `timeoutMs`). */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await Bun.sleep(25);
  }
}
