import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./processes.ts";

/** Debian's `pgbouncer` package puts the binary in /usr/sbin, outside a non-root PATH. */
export function findPgBouncer(): string | null {
  for (const candidate of ["pgbouncer", "/usr/sbin/pgbouncer"]) {
    if (spawnSync(candidate, ["--version"]).status === 0) return candidate;
  }
  return null;
}

export interface PgBouncer {
  /** `postgres://user@127.0.0.1:<port>/<database>` through the pooler. */
  url(database: string): string;
  log(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A PgBouncer of the test's own in transaction mode, in front of `serverUrl`'s Postgres, passing any
 * database name through (trust auth, the test server's user), on a port the system picks as free (a fixed
 * starting port was taken by a concurrent run of the same test on this machine).
 * PgBouncer refuses to run as root: as root it is told to switch to `nobody`.
 */
export async function startPgBouncer(binary: string, serverUrl: string): Promise<PgBouncer> {
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username) || "postgres";
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "parley-pgbouncer-"));
  await chmod(dir, 0o777);
  const ini = join(dir, "pgbouncer.ini");
  await writeFile(join(dir, "users.txt"), `"${user}" ""\n`);
  await writeFile(
    ini,
    [
      "[databases]",
      `* = host=${server.hostname} port=${server.port || 5432}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${join(dir, "users.txt")}`,
      "pool_mode = transaction",
      "default_pool_size = 10",
      "max_client_conn = 500",
      `logfile = ${join(dir, "pgbouncer.log")}`,
      "",
    ].join("\n"),
  );
  const asRoot = process.getuid?.() === 0 ? ["-u", "nobody"] : [];
  const child: ChildProcess = spawn(binary, [...asRoot, ini], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d) => (out += d));
  child.stderr?.on("data", (d) => (out += d));
  const exited = new Promise((r) => child.on("exit", r));
  const deadline = Date.now() + 10_000;
  while (!out.includes("process up")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`pgbouncer did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: (database) => `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${database}`,
    log: () => readFile(join(dir, "pgbouncer.log"), "utf8").catch(() => out),
    async stop() {
      if (child.exitCode === null) child.kill("SIGINT");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
