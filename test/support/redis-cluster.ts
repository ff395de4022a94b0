import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./processes.ts";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Redis Cluster of the test's own: `masters` redis-server processes on free ports, every slot assigned. */
export interface OwnRedisCluster {
  ports: number[];
  /** REDIS_CLUSTER_NODES for Parley. */
  nodes: string;
  /** Runs redis-cli against one node (`-c` follows redirections), returning its output. */
  cli(port: number, ...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts the servers with cluster mode on, keeping nothing on disk but each node's cluster file in a temp
 * directory, joins them with `redis-cli --cluster create` and waits until every node says `cluster_state:ok`.
 */
export async function startOwnRedisCluster(masters = 3): Promise<OwnRedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), "parley-cluster-"));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = once(c, "exit");
        c.kill("SIGKILL");
        await exited;
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };
  process.once("exit", () => children.forEach((c) => c.kill("SIGKILL")));
  const cli = async (port: number, ...args: string[]) =>
    (await run("redis-cli", ["-p", String(port), ...args], { timeout: 30_000 })).stdout;
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      ports.push(port);
      children.push(
        spawn(
          "redis-server",
          [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--maxmemory-policy", "noeviction", "--cluster-enabled", "yes",
            "--cluster-config-file", join(dir, `nodes-${port}.conf`), "--cluster-node-timeout", "5000",
            "--dir", dir,
          ],
          { stdio: "ignore" },
        ),
      );
    }
    for (const port of ports) await waitFor(async () => (await cli(port, "PING")).trim() === "PONG", `node ${port} answers`);
    await run(
      "redis-cli",
      ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"],
      { timeout: 60_000 },
    );
    for (const port of ports) {
      await waitFor(async () => (await cli(port, "CLUSTER", "INFO")).includes("cluster_state:ok"), `node ${port} sees the cluster ok`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { ports, nodes: ports.map((p) => `127.0.0.1:${p}`).join(","), cli, stop };
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}
