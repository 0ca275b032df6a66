/**
 * Preloaded before every test file (bunfig.toml): stops the shared servers, drops the
 * databases and removes the directories when the whole run ends, and repeats loudly why
 * Postgres did not run, if it did not.
 */

import { afterAll } from "bun:test";
import { cleanUp, POSTGRES_SKIPPED } from "./server";

afterAll(async () => {
  await cleanUp();
  if (POSTGRES_SKIPPED !== null) {
    console.error(`\n${"!".repeat(30)} ${POSTGRES_SKIPPED} ${"!".repeat(30)}\n`);
  }
}, 60_000);
