import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, describe, expect, inject, it } from "vitest";
import { RedisLease, startLeasedSweep, type LeasedSweep } from "../../src/queue/sweep-lease.ts";
import { startOwnRedis } from "../support/redis-server.ts";
import { eventually, sleep } from "../support/waiting.ts";

/**
 * The sweep lease over a real Redis: workers in this process, each with a connection of its own as a
 * worker process has. A worker "dies" as SIGKILL leaves things in Redis: its connection drops, the lease
 * is not given back.
 */

// Long enough that a loaded machine's pauses do not let a live holder's lease lapse.
const LEASE_MS = 1500;
const SWEEP_MS = 100;

interface Run {
  worker: number;
  start: number;
  end: number;
}

const connections: Redis[] = [];
afterAll(() => connections.forEach((c) => c.disconnect()));

function logLines() {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { log, lines };
}

/** A worker sweeping under the lease at `key`; each run takes 20 ms and is recorded. */
function startWorker(worker: number, redisUrl: string, key: string, runs: Run[], fresh: number[]) {
  // As the service's request-path connection: commands fail in bounded time while Redis is away.
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2, commandTimeout: 300, connectTimeout: 300 });
  redis.on("error", () => {});
  connections.push(redis);
  const { log, lines } = logLines();
  const lease = new RedisLease({ redis, key, ttlMs: LEASE_MS });
  const sweep: LeasedSweep = startLeasedSweep({
    lease,
    intervalMs: SWEEP_MS,
    log,
    newSweep: () => {
      fresh.push(worker);
      return async () => {
        const start = Date.now();
        await sleep(20);
        runs.push({ worker, start, end: Date.now() });
      };
    },
  });
  return { redis, lease, sweep, lines };
}

/** True when no two runs overlap in time. */
function oneAtATime(runs: Run[]): boolean {
  const sorted = [...runs].sort((a, b) => a.start - b.start);
  return sorted.every((run, i) => i === 0 || sorted[i - 1]!.end <= run.start);
}

describe("the sweep lease", () => {
  it("lets one of three workers sweep at a time, and another take over when it dies", async () => {
    const key = `parley-test-${randomBytes(4).toString("hex")}:sweep-lease`;
    const runs: Run[] = [];
    const fresh: number[] = [];
    const workers = [0, 1, 2].map((i) => startWorker(i, inject("redisUrl"), key, runs, fresh));
    try {
      // Several lease periods: one worker holds it throughout and sweeps every interval.
      await eventually(async () => runs.length >= 20, { what: "20 sweeps", timeoutMs: 30_000 });
      const holder = runs[0]!.worker;
      expect(new Set(runs.map((r) => r.worker))).toEqual(new Set([holder]));
      expect(fresh).toEqual([holder]);

      // The holder dies without giving the lease back: another worker takes it once it lapses.
      workers[holder]!.redis.disconnect();
      await workers[holder]!.sweep.stop();
      const takeover = await eventually(async () => runs.find((r) => r.worker !== holder), {
        what: "another worker sweeping",
        timeoutMs: 30_000,
      });
      await eventually(async () => runs.filter((r) => r.worker === takeover.worker).length >= 10, {
        what: "10 sweeps by the new holder",
        timeoutMs: 30_000,
      });
      const after = runs.filter((r) => r.start >= takeover.start);
      expect(new Set(after.map((r) => r.worker))).toEqual(new Set([takeover.worker]));
      // The new holder started with a sweep of its own (fresh state), and nobody swept alongside anyone.
      expect(fresh).toEqual([holder, takeover.worker]);
      expect(oneAtATime(runs)).toBe(true);
    } finally {
      await Promise.all(workers.map((w) => w.sweep.stop()));
    }
  }, 90_000);

  it("gives the lease back on stop, so another worker takes it without waiting for it to lapse", async () => {
    const key = `parley-test-${randomBytes(4).toString("hex")}:sweep-lease`;
    const runs: Run[] = [];
    const fresh: number[] = [];
    const first = startWorker(0, inject("redisUrl"), key, runs, fresh);
    await eventually(async () => runs.length >= 1, { what: "a sweep", timeoutMs: 30_000 });
    const second = startWorker(1, inject("redisUrl"), key, runs, fresh);
    try {
      await sleep(LEASE_MS);
      expect(runs.every((r) => r.worker === 0)).toBe(true);
      expect(await second.redis.get(key)).toBe(first.lease.token);
      await first.sweep.stop();
      // Given back: the key is gone, or already the second worker's.
      expect([null, second.lease.token]).toContain(await second.redis.get(key));
      await eventually(async () => runs.some((r) => r.worker === 1), { what: "the second worker sweeping", timeoutMs: 30_000 });
    } finally {
      await Promise.all([first.sweep.stop(), second.sweep.stop()]);
    }
  }, 60_000);

  it("runs no sweep while Redis is unreachable, warns once for the outage, and sweeps again after", async () => {
    const own = await startOwnRedis();
    const runs: Run[] = [];
    const worker = startWorker(0, own.url, "parley-test:sweep-lease", runs, []);
    try {
      await eventually(async () => runs.length >= 3, { what: "sweeps", timeoutMs: 30_000 });
      await own.kill();
      const killedAt = Date.now();
      await sleep(LEASE_MS * 2);
      // None starts once the last renewal Redis answered has run out (a lease Redis may have moved elsewhere).
      expect(runs.filter((r) => r.start > killedAt + LEASE_MS)).toEqual([]);
      const warnings = worker.lines.filter((l) => l.level === 40 && l.msg.startsWith("sweep lease unreachable"));
      expect(warnings).toHaveLength(1);

      await own.start();
      const back = Date.now();
      await eventually(async () => runs.some((r) => r.start > back), { what: "a sweep after Redis is back", timeoutMs: 30_000 });
      expect(worker.lines.filter((l) => l.level === 40 && l.msg.startsWith("sweep lease unreachable"))).toHaveLength(1);
    } finally {
      await worker.sweep.stop();
      await own.kill();
    }
  }, 90_000);
});
