/**
 * Namespace isolation: every method, called with another tenant's token or a forged one, sees
 * and changes only the caller's own namespace.
 */

import { expect, test } from "bun:test";
import { ADMIN_TOKEN, EventoDBError, type Json } from "../lib/client";
import { event, forEachBackend, type Tenant } from "../lib/fixtures";

/** A token that names `namespace` but was never issued (wrong random part). */
function forged(namespace: string): string {
  const b64 = Buffer.from(namespace, "utf8").toString("base64url");
  return `ns_${b64}_${"ab".repeat(32)}`;
}

/** Every RPC method with arguments aimed at the victim's data, and what the caller may see. */
function calls(victim: Tenant): { method: string; args: Json[]; own: Json | "forbidden" }[] {
  return [
    { method: "stream.get", args: ["secret-1"], own: [] },
    { method: "stream.last", args: ["secret-1"], own: null },
    { method: "stream.version", args: ["secret-1"], own: null },
    { method: "category.get", args: ["secret"], own: [] },
    { method: "category.get", args: [""], own: [] },
    { method: "ns.streams", args: [], own: [] },
    { method: "ns.categories", args: [], own: [] },
    { method: "ns.info", args: [victim.id], own: "forbidden" },
    { method: "ns.delete", args: [victim.id], own: "forbidden" },
    { method: "ns.create", args: [`${victim.id}_x`], own: "forbidden" },
    { method: "ns.list", args: [], own: "forbidden" },
  ];
}

forEachBackend((ctx) => {
  test("another tenant's token reads nothing of the victim's and writes only its own", async () => {
    const victim = await ctx.tenant();
    const intruder = await ctx.tenant();
    await victim.client.write("secret-1", event(1));
    await victim.client.write("secret-1", event(2));
    for (const { method, args, own } of calls(victim)) {
      if (own === "forbidden") {
        const error = await intruder.client.fails(method, ...args);
        expect([method, error.status, error.code]).toEqual([method, 403, "AUTH_UNAUTHORIZED"]);
      } else {
        expect([method, await intruder.client.call(method, ...args)]).toEqual([method, own]);
      }
    }
    expect(await intruder.client.call<string>("sys.version")).toMatch(/^\d+\.\d+\.\d+/);
    expect(await intruder.client.write("secret-1", event(9))).toEqual({ position: 0, globalPosition: 1 });
    // The victim's data is untouched and still there (ns.delete was refused).
    expect((await victim.client.get("secret-1")).map((m) => m[3])).toEqual([1, 2]);
    expect((await ctx.admin().namespaceInfo(victim.id)).messageCount).toBe(2);
  });

  test("ns.info and ns.delete of another tenant are refused alike whether it exists or not", async () => {
    const intruder = await ctx.tenant();
    for (const method of ["ns.info", "ns.delete"]) {
      const missing = await intruder.client.fails(method, "no_such_namespace");
      expect([missing.status, missing.code]).toEqual([403, "AUTH_UNAUTHORIZED"]);
    }
    // A tenant may inspect itself.
    expect((await intruder.client.namespaceInfo(intruder.id)).namespace).toBe(intruder.id);
  });

  test("subscriptions and imports stay inside the caller's namespace", async () => {
    const victim = await ctx.tenant();
    const intruder = await ctx.tenant();
    await victim.client.write("secret-1", event(1));
    const subscription = await intruder.client.subscribe({ category: "secret" });
    try {
      await subscription.ready();
      await victim.client.write("secret-1", event(2));
      expect(await subscription.drain(300)).toEqual([]);
    } finally {
      subscription.close();
    }
    const line = JSON.stringify({
      id: crypto.randomUUID(),
      stream: "secret-1",
      type: "Imported",
      pos: 0,
      gpos: 1,
      data: {},
      meta: null,
      time: "2025-01-15T10:00:00Z",
    });
    expect((await intruder.client.import(line)).at(-1)).toMatchObject({ done: true, imported: 1 });
    expect((await victim.client.get("secret-1")).map((m) => m[1])).toEqual(["Happened", "Happened"]);
    expect((await intruder.client.get("secret-1")).map((m) => m[1])).toEqual(["Imported"]);
  });

  test("a forged token naming the victim is refused in production and relaxed in test mode", async () => {
    const victim = await ctx.tenant();
    await victim.client.write("secret-1", event(1));
    const forger = ctx.admin().as(forged(victim.id));
    if (ctx.strictAuth) {
      for (const { method, args } of calls(victim)) {
        const error = await forger.fails(method, ...args);
        expect([method, error.status, error.code]).toEqual([method, 403, "AUTH_UNAUTHORIZED"]);
        expect(error.details).toEqual({ namespace: victim.id });
      }
      for (const method of ["stream.write", "sys.version", "sys.health"]) {
        const args = method === "stream.write" ? ["secret-1", event(2)] : [];
        expect((await forger.fails(method, ...args)).code).toBe("AUTH_UNAUTHORIZED");
      }
      const subscribe = await fetch(`${ctx.server().url}/subscribe?stream=secret-1&token=${forged(victim.id)}`);
      expect(subscribe.status).toBe(403);
      const refused = await forger.import("").then(() => null, (error: unknown) => error);
      expect(refused).toBeInstanceOf(EventoDBError);
      expect((refused as EventoDBError).code).toBe("AUTH_UNAUTHORIZED");
      expect(await victim.client.version("secret-1")).toBe(0);
    } else {
      // Test mode does not check token hashes (documented): the token acts in its namespace.
      expect(await forger.version("secret-1")).toBe(0);
    }
  });

  test("the token of a deleted namespace no longer works", async () => {
    const tenant = await ctx.tenant();
    await tenant.client.write("s-1", event(1));
    const deleted = await ctx.admin().deleteNamespace(tenant.id);
    expect(deleted).toMatchObject({ namespace: tenant.id, messagesDeleted: 1 });
    const error = await tenant.client.fails("stream.get", "s-1");
    expect([error.status, error.code]).toEqual([403, "AUTH_UNAUTHORIZED"]);
  });

  test("only the admin token administers namespaces, and default cannot be deleted", async () => {
    const tenant = await ctx.tenant();
    const listed = await ctx.admin().listNamespaces();
    expect(listed.map((n) => n.namespace)).toContain(tenant.id);
    expect(listed.map((n) => n.namespace)).toContain("default");
    const error = await ctx.admin().fails("ns.delete", "default");
    expect([error.status, error.code]).toEqual([400, "INVALID_REQUEST"]);
    expect(ctx.admin().token).toBe(ADMIN_TOKEN);
  });
});
