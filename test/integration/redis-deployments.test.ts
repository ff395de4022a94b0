import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis, type RedisOptions } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { apiClient } from "../support/http.ts";
import { seedTestApiKey } from "../support/keys.ts";
import { freePort, useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";
import { startRedisProcess, type RedisProcess } from "../support/redis-server.ts";
import { startTcpProxy } from "../support/tcp-proxy.ts";
import { eventually } from "../support/waiting.ts";

/**
 * Parley against Redis servers of the test's own (TLS, behind Sentinel, with a lossy eviction policy),
 * run from dist/ as `npm start` runs it: start either works end to end or ends at once, saying which
 * setting to change.
 */
const processes = useParleyProcesses();
const servers: RedisProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "parley-redisopts-"));
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

const environment = (extra: Record<string, string>) =>
  processes.environment({ SIMULATOR_TTFT_MS: "0", SIMULATOR_TOKENS_PER_SECOND: "200", ...extra });

async function redisServer(args: string[], readyText = "Ready to accept connections"): Promise<RedisProcess> {
  // `args` first: a configuration file must be the first argument.
  // `--dir`: a master syncing a replica writes its snapshot there, whatever `--save` says.
  const server = await startRedisProcess([...args, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], readyText);
  servers.push(server);
  return server;
}

/** The exit code of a start that must end by itself; bounded, so a hang fails the test instead of stalling it. */
async function exitOf(p: ParleyProcess, timeoutMs = 120_000): Promise<number | string> {
  return Promise.race([
    p.exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms:\n${p.output()}`)), timeoutMs).unref(),
    ),
  ]);
}

/** One turn through the API, and the keys it left in the Redis at `redis` (proof the turn went through it). */
async function turnThrough(p: ParleyProcess, env: Record<string, string>, sql: Parameters<typeof seedTestApiKey>[0], redis: RedisOptions) {
  await waitForOutput(p, "api listening", 60_000);
  await seedTestApiKey(sql);
  const api = apiClient(`http://127.0.0.1:${env.PORT}/v1`);
  const { body: conv } = await api.post("/conversations", {});
  const turn = await api.post(`/conversations/${conv.id}/messages`, { content: "over a Redis of its own" });
  const readyStatus = await readyzOf(env);
  const client = new Redis({ ...redis, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const keys = await client.keys(`${env.REDIS_PREFIX}:*`);
    return { turn, readyStatus, keys };
  } finally {
    client.disconnect();
  }
}

/** The API's /readyz status, bounded. */
async function readyzOf(env: Record<string, string>): Promise<number> {
  return (await fetch(`http://127.0.0.1:${env.PORT}/readyz`, { signal: AbortSignal.timeout(20_000) })).status;
}

/**
 * After Redis moved (a failover, a partition, a name moved): a new conversation is taken once connections have
 * found their way over (bounded), and a turn in it completes.
 */
async function turnWorksAgain(env: Record<string, string>, what: string): Promise<void> {
  const api = apiClient(`http://127.0.0.1:${env.PORT}/v1`);
  const conv = await eventually(async () => {
    const res = await api.post("/conversations", {});
    return res.status === 201 ? res.body : null;
  }, { what: `a conversation ${what}`, timeoutMs: 60_000, everyMs: 500 });
  const turn = await api.post(`/conversations/${conv.id}/messages`, { content: what });
  expect(turn.status).toBe(201);
  expect(turn.body.reply.status).toBe("completed");
}

describe("Redis over TLS", () => {
  // A CA of the test's own, and a server certificate it signed for `redis.test`: not the name the service
  // connects to (127.0.0.1), so the name to check must be given.
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  let port = 0;
  const ca = join(dir, "ca.crt");
  const startTls = async () => {
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Parley test CA");
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=redis.test");
    writeFileSync(join(dir, "san.cnf"), "subjectAltName=DNS:redis.test\n");
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf");
    port = await freePort();
    await redisServer([
      "--port", "0", "--tls-port", String(port),
      "--tls-cert-file", join(dir, "server.crt"), "--tls-key-file", join(dir, "server.key"), "--tls-ca-cert-file", ca,
      "--tls-auth-clients", "no", "--maxmemory-policy", "noeviction",
    ]);
  };

  it("ends start at once on a certificate it cannot trust, naming the setting; works with the CA and the name", async () => {
    await startTls();
    const url = `rediss://127.0.0.1:${port}`;

    // Started together: each start is slow on a loaded machine, and they share nothing.
    const untrusted = processes.start((await environment({ REDIS_URL: url })).env);
    const wrongName = processes.start((await environment({ REDIS_URL: url, REDIS_TLS_CA_FILE: ca })).env);
    const missingCa = processes.start((await environment({ REDIS_URL: url, REDIS_TLS_CA_FILE: join(dir, "nowhere.pem") })).env);
    expect(await Promise.all([exitOf(untrusted), exitOf(wrongName), exitOf(missingCa)])).toEqual([1, 1, 1]);
    expect(untrusted.output()).toContain("Redis TLS: self-signed certificate");
    expect(untrusted.output()).toContain("set REDIS_TLS_CA_FILE");
    expect(untrusted.output()).not.toContain("not an Error");
    expect(wrongName.output()).toContain("DNS:redis.test");
    expect(wrongName.output()).toContain("set REDIS_TLS_SERVERNAME");
    expect(missingCa.output()).toMatch(/REDIS_TLS_CA_FILE: cannot read '.*nowhere\.pem' \(ENOENT\)/);

    const { database, env } = await environment({ REDIS_URL: url, REDIS_TLS_CA_FILE: ca, REDIS_TLS_SERVERNAME: "redis.test" });
    const good = processes.start(env);
    const { turn, readyStatus, keys } = await turnThrough(good, env, database.sql, {
      host: "127.0.0.1",
      port,
      tls: { ca: readFileSync(ca, "utf8"), servername: "redis.test" },
    });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
    expect(turn.body.reply.content.length).toBeGreaterThan(0);
    expect(readyStatus).toBe(200);
    expect(keys.length).toBeGreaterThan(0);
  }, 480_000);
});

describe("Redis behind Sentinel", () => {
  it("finds the master through REDIS_SENTINELS and runs a turn on it; an unknown master name ends start", async () => {
    const masterPort = await freePort();
    await redisServer(["--port", String(masterPort), "--maxmemory-policy", "noeviction"]);
    const sentinelPort = await freePort();
    // Sentinel rewrites its configuration file, so it is one of the test's own.
    const conf = join(dir, "sentinel.conf");
    writeFileSync(conf, [`port ${sentinelPort}`, "bind 127.0.0.1", `dir ${dir}`, `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`, ""].join("\n"));
    await redisServer([conf, "--sentinel"], "+monitor master mymaster");
    // REDIS_URL's host and port are not used with Sentinels: a port nothing listens on proves it.
    const sentinelEnv = { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, REDIS_SENTINELS: `127.0.0.1:${sentinelPort}` };

    const unknown = processes.start((await environment({ ...sentinelEnv, REDIS_SENTINEL_NAME: "othermaster" })).env);
    expect(await exitOf(unknown)).toBe(1);
    expect(unknown.output()).toContain("know no master named REDIS_SENTINEL_NAME");

    const { database, env } = await environment({ ...sentinelEnv, REDIS_SENTINEL_NAME: "mymaster" });
    const { turn, readyStatus, keys } = await turnThrough(processes.start(env), env, database.sql, { host: "127.0.0.1", port: masterPort });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
    expect(readyStatus).toBe(200);
    expect(keys.length).toBeGreaterThan(0);
  }, 480_000);
});

describe("Redis behind Sentinel, failing over", () => {
  it("follows the master to the replica Sentinel promotes: turns and /readyz work on the new master", async () => {
    const oldPort = await freePort();
    const newPort = await freePort();
    await redisServer(["--port", String(oldPort), "--maxmemory-policy", "noeviction"]);
    await redisServer(["--port", String(newPort), "--maxmemory-policy", "noeviction", "--replicaof", "127.0.0.1", String(oldPort)]);
    const sentinelPort = await freePort();
    const conf = join(dir, "sentinel-failover.conf");
    writeFileSync(
      conf,
      [`port ${sentinelPort}`, "bind 127.0.0.1", `dir ${dir}`, `sentinel monitor fomaster 127.0.0.1 ${oldPort} 1`, "sentinel failover-timeout fomaster 20000", ""].join("\n"),
    );
    await redisServer([conf, "--sentinel"], "+monitor master fomaster");
    const sentinel = new Redis({ host: "127.0.0.1", port: sentinelPort, lazyConnect: true, maxRetriesPerRequest: 1 });
    await sentinel.connect();
    try {
      // Sentinel learns of the replica from the master's INFO, every 10 s.
      await eventually(async () => ((await sentinel.call("SENTINEL", "REPLICAS", "fomaster")) as unknown[]).length > 0, {
        what: "Sentinel knows the replica",
        timeoutMs: 60_000,
        everyMs: 500,
      });
      const { database, env } = await environment({
        REDIS_URL: "redis://127.0.0.1:1",
        REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`,
        REDIS_SENTINEL_NAME: "fomaster",
      });
      const p = processes.start(env);
      const before = await turnThrough(p, env, database.sql, { host: "127.0.0.1", port: oldPort });
      expect(before.turn.body.reply?.status).toBe("completed");

      await sentinel.call("SENTINEL", "FAILOVER", "fomaster");
      await eventually(async () => ((await sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "fomaster")) as string[])[1] === String(newPort), {
        what: "Sentinel names the replica master",
        timeoutMs: 60_000,
        everyMs: 250,
      });
      // The first turns after the switch may meet connections still on their way over; one must work, bounded.
      await turnWorksAgain(env, "after the failover");
      expect(await readyzOf(env)).toBe(200);
      // The new master holds this turn's keys: the reply's events, written after the switch.
      const promoted = new Redis({ host: "127.0.0.1", port: newPort, lazyConnect: true, maxRetriesPerRequest: 1 });
      await promoted.connect();
      try {
        expect(await promoted.call("ROLE").then((r) => (r as string[])[0])).toBe("master");
        expect(await promoted.exists(`${env.REDIS_PREFIX}:readyz`)).toBe(1);
      } finally {
        promoted.disconnect();
      }
    } finally {
      sentinel.disconnect();
    }
  }, 480_000);
});

describe("Redis behind Sentinel, the master cut off", () => {
  it("moves to the promoted replica when Sentinel announces it, though the old master's connections never close", async () => {
    const oldPort = await freePort();
    const newPort = await freePort();
    await redisServer(["--port", String(oldPort), "--maxmemory-policy", "noeviction"]);
    await redisServer(["--port", String(newPort), "--maxmemory-policy", "noeviction", "--replicaof", "127.0.0.1", String(oldPort)]);
    // Parley and the Sentinel reach the master through a proxy that the test black-holes: a partition, in which
    // no connection to the old master closes or errs; the replica replicates from it directly.
    const path = await startTcpProxy({ host: "127.0.0.1", port: oldPort });
    const sentinelPort = await freePort();
    const conf = join(dir, "sentinel-partition.conf");
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`, "bind 127.0.0.1", `dir ${dir}`,
        `sentinel monitor cutmaster 127.0.0.1 ${path.port} 1`,
        "sentinel down-after-milliseconds cutmaster 2000",
        "sentinel failover-timeout cutmaster 20000",
        "",
      ].join("\n"),
    );
    await redisServer([conf, "--sentinel"], "+monitor master cutmaster");
    const sentinel = new Redis({ host: "127.0.0.1", port: sentinelPort, lazyConnect: true, maxRetriesPerRequest: 1 });
    await sentinel.connect();
    try {
      await eventually(async () => ((await sentinel.call("SENTINEL", "REPLICAS", "cutmaster")) as unknown[]).length > 0, {
        what: "Sentinel knows the replica",
        timeoutMs: 60_000,
        everyMs: 500,
      });
      const { database, env } = await environment({ REDIS_URL: "redis://127.0.0.1:1", REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`, REDIS_SENTINEL_NAME: "cutmaster" });
      const p = processes.start(env);
      const before = await turnThrough(p, env, database.sql, { host: "127.0.0.1", port: oldPort });
      expect(before.turn.body.reply?.status).toBe("completed");

      path.blackhole();
      await eventually(async () => ((await sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "cutmaster")) as string[])[1] === String(newPort), {
        what: "Sentinel promotes the replica",
        timeoutMs: 90_000,
        everyMs: 250,
      });
      await eventually(async () => (await readyzOf(env)) === 200, { what: "ready on the promoted replica", timeoutMs: 60_000, everyMs: 250 });
      await turnWorksAgain(env, "after the partition");
    } finally {
      sentinel.disconnect();
      await path.close();
    }
  }, 480_000);
});

describe("a Redis name moved to a new primary (managed Redis's failover, no Sentinel)", () => {
  it("leaves the demoted primary on READONLY and follows the name: not ready meanwhile, turns work after", async () => {
    const oldPort = await freePort();
    const newPort = await freePort();
    await redisServer(["--port", String(oldPort), "--maxmemory-policy", "noeviction"]);
    await redisServer(["--port", String(newPort), "--maxmemory-policy", "noeviction", "--replicaof", "127.0.0.1", String(oldPort)]);
    // The proxy plays the DNS name: first the old primary, later the new one.
    const name = await startTcpProxy({ host: "127.0.0.1", port: oldPort });
    const admin = (port: number) => new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1 });
    const [oldNode, newNode] = [admin(oldPort), admin(newPort)];
    try {
      const { database, env } = await environment({ REDIS_URL: `redis://127.0.0.1:${name.port}` });
      const p = processes.start(env);
      const before = await turnThrough(p, env, database.sql, { host: "127.0.0.1", port: oldPort });
      expect(before.turn.body.reply?.status).toBe("completed");

      // The failover, while the name still points at the old primary: its clients reconnect to a replica.
      await newNode.replicaof("NO", "ONE");
      await oldNode.replicaof("127.0.0.1", newPort);
      await eventually(async () => (await readyzOf(env)) === 503, { what: "not ready on the demoted primary", timeoutMs: 60_000, everyMs: 250 });

      name.retarget({ host: "127.0.0.1", port: newPort });
      await eventually(async () => (await readyzOf(env)) === 200, { what: "ready on the new primary", timeoutMs: 60_000, everyMs: 250 });
      await turnWorksAgain(env, "after the name moved");
    } finally {
      oldNode.disconnect();
      newNode.disconnect();
      await name.close();
    }
  }, 480_000);
});

describe("Redis's eviction policy", () => {
  it("refuses to start on a Redis that evicts keys, naming the setting; starts on noeviction", async () => {
    const lossyPort = await freePort();
    await redisServer(["--port", String(lossyPort), "--maxmemory-policy", "allkeys-lru"]);
    const lossy = processes.start((await environment({ REDIS_URL: `redis://127.0.0.1:${lossyPort}` })).env);
    expect(await exitOf(lossy)).toBe(1);
    expect(lossy.output()).toContain("maxmemory-policy allkeys-lru");
    expect(lossy.output()).toContain("set `maxmemory-policy noeviction`");

    const keepingPort = await freePort();
    await redisServer(["--port", String(keepingPort), "--maxmemory-policy", "noeviction"]);
    const keeping = processes.start((await environment({ REDIS_URL: `redis://127.0.0.1:${keepingPort}` })).env);
    await waitForOutput(keeping, "api listening", 60_000);
  }, 300_000);
});

describe("/readyz", () => {
  it("is a 503 while Redis answers PING but refuses writes, and ready again once it takes them", async () => {
    const port = await freePort();
    await redisServer(["--port", String(port), "--maxmemory-policy", "noeviction"]);
    const { env } = await environment({ REDIS_URL: `redis://127.0.0.1:${port}` });
    const p = processes.start(env);
    await waitForOutput(p, "api listening", 60_000);
    expect(await readyzOf(env)).toBe(200);
    const admin = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 1 });
    await admin.connect();
    try {
      // Full under noeviction: every write is refused (OOM), PING still answers.
      await admin.config("SET", "maxmemory", "1");
      expect(await admin.ping()).toBe("PONG");
      await expect(admin.set("probe", "1")).rejects.toThrow(/OOM/);
      expect(await readyzOf(env)).toBe(503);
      await admin.config("SET", "maxmemory", "0");
      expect(await readyzOf(env)).toBe(200);
    } finally {
      admin.disconnect();
    }
  }, 120_000);
});
