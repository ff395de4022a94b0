import type { RedisClient } from "../redis/client.ts";
import { RateLimitedError } from "../domain/errors.ts";
import type { ReplySlots } from "../domain/reply-slots.ts";

/**
 * Replies a tenant has in flight, shared by every API instance and worker: a
 * sorted set per tenant of reply ids scored by when their hold lapses. Written
 * by hand (a dozen lines of Lua) because the semaphore libraries for ioredis
 * expect the process that takes a slot to renew and give it back, and here the
 * API takes it and a worker, elsewhere, gives it back. The lease bounds what a
 * worker that dies without giving back can hold.
 */
const ACQUIRE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1, redis.call('ZCARD', KEYS[1])} end
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, held + 1}`;

type AcquireCommand = (key: string, member: string, limit: string, leaseMs: string) => Promise<[number, number]>;

// Re-exported for the domain files that still import it from here; it lives in the domain.
export type { ReplySlots };

export class RedisReplySlots implements ReplySlots {
  readonly #redis: RedisClient & { acquireReplySlot: AcquireCommand };
  readonly #prefix: string;
  readonly #limit: number;
  readonly #leaseMs: number;

  constructor(opts: { redis: RedisClient; prefix: string; limit: number; leaseSeconds: number }) {
    opts.redis.defineCommand("acquireReplySlot", { numberOfKeys: 1, lua: ACQUIRE_SCRIPT });
    this.#redis = opts.redis as RedisClient & { acquireReplySlot: AcquireCommand };
    this.#prefix = opts.prefix;
    this.#limit = opts.limit;
    this.#leaseMs = opts.leaseSeconds * 1000;
  }

  #key(tenantId: string): string {
    return `${this.#prefix}:reply-slots:${tenantId}`;
  }

  async acquire(tenantId: string, replyId: string): Promise<void> {
    const [taken, held] = await this.#redis.acquireReplySlot(this.#key(tenantId), replyId, String(this.#limit), String(this.#leaseMs));
    if (taken === 1) return;
    throw new RateLimitedError(
      `Concurrency limit reached: ${this.#limit} replies in flight per tenant (MAX_CONCURRENT_REPLIES). ` +
        "Wait for one to finish, or cancel one.",
      { kind: "replies", limit: this.#limit, remaining: Math.max(0, this.#limit - held), resetMs: 1000 },
    );
  }

  async release(tenantId: string, replyId: string): Promise<void> {
    await this.#redis.zrem(this.#key(tenantId), replyId);
  }
}
