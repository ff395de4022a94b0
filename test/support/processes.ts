import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, inject } from "vitest";
import { PARLEY_NODE_FLAGS } from "../../src/runtime-flags.ts";
import { createTestDatabase, type TestDatabase } from "./service.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

export interface ParleyProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

/** `node dist/main.js` as `npm start` runs it (global-setup.ts built dist/ for this run), with the given environment. */
export function spawnParley(env: Record<string, string>): ParleyProcess {
  const child = spawn(process.execPath, [...PARLEY_NODE_FLAGS, "dist/main.js"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d) => (out += d));
  child.stderr?.on("data", (d) => (out += d));
  const exited = new Promise<number | string>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  return { child, output: () => out, exited };
}

/** Waits until the process has logged a line containing `text`. */
export async function waitForOutput(p: ParleyProcess, text: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!p.output().includes(text)) {
    if (Date.now() > deadline) throw new Error(`no "${text}" in output:\n${p.output()}`);
    if (p.child.exitCode !== null) throw new Error(`exited ${p.child.exitCode} before "${text}":\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Parley processes for one test file or describe block. `environment()` makes
 * a database of its own and the variables to run Parley on it (a fresh Redis
 * prefix and a free port each time); whatever `start` spawned is killed, and
 * every database dropped, after the block.
 */
export function useParleyProcesses() {
  const running: ParleyProcess[] = [];
  const databases: TestDatabase[] = [];
  afterAll(async () => {
    for (const p of running) if (p.child.exitCode === null) p.child.kill("SIGKILL");
    await Promise.all(running.map((p) => p.exited));
    for (const d of databases) await d.drop();
  });
  return {
    async environment(extra: Record<string, string> = {}): Promise<{ database: TestDatabase; env: Record<string, string> }> {
      const database = await createTestDatabase();
      databases.push(database);
      const env = {
        DATABASE_URL: database.url,
        REDIS_URL: inject("redisUrl"),
        REDIS_PREFIX: `parley-test-${randomBytes(4).toString("hex")}`,
        HOST: "127.0.0.1",
        PORT: String(await freePort()),
        // Four test files run at once, some with several processes, beside the quick bench's own: at the
        // default of 10 connections a process they went past a default max_connections of 100.
        DATABASE_POOL_MAX: "4",
        ...extra,
      };
      return { database, env };
    },
    start(env: Record<string, string>): ParleyProcess {
      const p = spawnParley(env);
      running.push(p);
      return p;
    },
  };
}
