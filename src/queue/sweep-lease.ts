import { randomUUID } from "node:crypto";
import type { RedisClient } from "../redis/client.ts";
import type { Logger } from "pino";

/**
 * Takes the lease when nobody holds it (SET NX PX), or renews it when this holder still does (compare the
 * token, then PEXPIRE): one round trip either way. 1 renewed, 2 taken, 0 held by someone else.
 */
const HOLD_SCRIPT = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0`;
/** Gives the lease back only if this holder still has it. */
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

type LeaseCommands = {
  holdSweepLease(key: string, token: string, ttlMs: string): Promise<number>;
  releaseSweepLease(key: string, token: string): Promise<number>;
};

export type LeaseHold = "renewed" | "taken" | "elsewhere";

/**
 * A lease in one Redis key, held by one process at a time for `ttlMs` unless renewed.
 * Written by hand (two short scripts) rather than taken from a library:
 * - BullMQ's job schedulers (`upsertJobScheduler`) keep the schedule in the same Redis whose loss the
 *   lost-reply sweep exists to repair (a Redis restarted empty would stop the sweep for good), hand each
 *   run to whichever worker is free (the sweep's state between runs is in the process), and their jobs
 *   would wait behind replies and count in the queue's depth;
 * - redlock's quorum over several independent Redis servers is not needed with one (or one cluster), and
 *   its npm releases are a 2022 beta (v5) or older (v4).
 * The lease is an economy, not a fence: a sweep is safe to run twice at once (src/domain/lost-replies.ts),
 * so a holder paused past its lease overlapping with the next one costs duplicate work, nothing more.
 */
export class RedisLease {
  readonly #redis: RedisClient & LeaseCommands;
  readonly #key: string;
  readonly ttlMs: number;
  readonly token = randomUUID();

  /** `redis` should fail commands in bounded time (the request-path connection: command timeout, few retries). */
  constructor(opts: { redis: RedisClient; key: string; ttlMs: number }) {
    opts.redis.defineCommand("holdSweepLease", { numberOfKeys: 1, lua: HOLD_SCRIPT });
    opts.redis.defineCommand("releaseSweepLease", { numberOfKeys: 1, lua: RELEASE_SCRIPT });
    this.#redis = opts.redis as RedisClient & LeaseCommands;
    this.#key = opts.key;
    this.ttlMs = opts.ttlMs;
  }

  async hold(): Promise<LeaseHold> {
    const held = await this.#redis.holdSweepLease(this.#key, this.token, String(this.ttlMs));
    return held === 1 ? "renewed" : held === 2 ? "taken" : "elsewhere";
  }

  async release(): Promise<void> {
    await this.#redis.releaseSweepLease(this.#key, this.token);
  }
}

export interface LeasedSweep {
  /** Stops sweeping and gives the lease back (a sweep under way is not waited for). */
  stop(): Promise<void>;
}

/**
 * Runs a sweep every `intervalMs` in the one process holding `lease`, whatever the number of workers.
 * Every process tries to take (or renew) the lease every third of its lifetime (or every interval, if
 * shorter), so a dead holder's lease moves within about 4/3 of it. `newSweep` is called each time this
 * process takes the lease: a sweep keeps its state between runs (the lost-reply sweep's two sightings)
 * while its process holds the lease without a break, and a new holder starts fresh. While Redis does not answer no sweep runs (the lost-reply
 * sweep needs Redis, and another process may take the lease meanwhile); one warning per outage says so.
 */
export function startLeasedSweep(opts: {
  lease: RedisLease;
  intervalMs: number;
  log: Logger;
  newSweep: () => () => Promise<void>;
}): LeasedSweep {
  const { lease, log } = opts;
  let sweep: (() => Promise<void>) | null = null;
  /** When the lease lapses at the latest, counted from before the command that took or renewed it. */
  let heldUntil = 0;
  let unreachable = false;
  let holding: Promise<void> | null = null;
  let sweeping = false;

  const keepLease = (): void => {
    if (holding) return;
    const sentAt = Date.now();
    holding = lease
      .hold()
      .then((outcome) => {
        if (unreachable) log.info("sweep lease: Redis answers again");
        unreachable = false;
        if (outcome === "elsewhere") {
          if (sweep) log.info("sweep lease moved to another worker; this one stops sweeping");
          sweep = null;
          heldUntil = 0;
          return;
        }
        if (outcome === "taken" || !sweep) {
          sweep = opts.newSweep();
          log.info({ leaseMs: lease.ttlMs }, "took the sweep lease; this worker runs the sweeps");
        }
        heldUntil = sentAt + lease.ttlMs;
      })
      .catch((err: unknown) => {
        // The sweep (and its state) is kept: if the lease is still this process's when Redis answers, it
        // was held throughout; if it lapsed, `taken` starts a fresh one.
        if (!unreachable) log.warn({ err }, "sweep lease unreachable in Redis; no sweep runs until it answers");
        unreachable = true;
      })
      .finally(() => (holding = null));
  };

  const runSweep = (): void => {
    // A sweep slower than the interval (Postgres slow or away, bounded by its timeouts) is not joined by a
    // second one: the two would check the same replies, and the sweep keeps state.
    if (sweeping || !sweep || unreachable || Date.now() >= heldUntil) return;
    sweeping = true;
    const started = performance.now();
    sweep()
      .then(() => log.debug({ ms: Math.round(performance.now() - started) }, "sweep ran"))
      .catch((err: unknown) => log.warn({ err }, "sweeping failed"))
      .finally(() => (sweeping = false));
  };

  keepLease();
  // Asked at least every sweep interval too, so sweeping resumes within one once Redis is back.
  const renewal = setInterval(keepLease, Math.max(1, Math.min(opts.intervalMs, Math.floor(lease.ttlMs / 3))));
  const sweeps = setInterval(runSweep, opts.intervalMs);
  return {
    async stop() {
      clearInterval(renewal);
      clearInterval(sweeps);
      await holding;
      sweep = null;
      await lease.release().catch((err: unknown) => log.warn({ err }, "could not give back the sweep lease; it lapses on its own"));
    },
  };
}
