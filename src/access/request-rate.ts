import type { Logger } from "pino";
import type { RedisClient } from "../redis/client.ts";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { RateLimitedError, type LimitState } from "../domain/errors.ts";
import type { RedisCoolOff } from "./redis-cool-off.ts";

/**
 * Requests per API key per window, counted in Redis so every API instance
 * shares one budget per key. While Redis is away (refused, or timed out on a
 * partition: the connection has a command timeout) each instance counts on its
 * own rather than refusing every request, and says so: a warning when it starts
 * counting alone and when Redis counts again (a Redis that refuses the limiter's
 * commands, as a cluster did before its keys were hash-tagged, must not pass for
 * a working shared limit).
 */
export class RequestRateLimiter {
  readonly #limiter: RateLimiterRedis;
  readonly #inMemory: RateLimiterMemory;
  readonly #points: number;
  readonly #coolOff: RedisCoolOff | undefined;
  readonly #log: Logger;
  /** Counting in this process only, since Redis last failed a count. */
  #alone = false;

  constructor(opts: { redis: RedisClient; prefix: string; requests: number; windowSeconds: number; log: Logger; coolOff?: RedisCoolOff }) {
    this.#points = opts.requests;
    this.#coolOff = opts.coolOff;
    this.#log = opts.log;
    this.#inMemory = new RateLimiterMemory({ points: opts.requests, duration: opts.windowSeconds });
    this.#limiter = new RateLimiterRedis({
      storeClient: opts.redis,
      keyPrefix: `${opts.prefix}:rate`,
      points: opts.requests,
      duration: opts.windowSeconds,
    });
  }

  /** Counts one request of the key `keyHash` (hashApiKey); throws RateLimitedError when the window's budget is spent. */
  async take(keyHash: string): Promise<LimitState> {
    try {
      return this.#state(await this.#count(keyHash));
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      const state = this.#state(err);
      throw new RateLimitedError(
        `Rate limit reached: ${this.#points} requests per key per ${Math.round(this.#limiter.duration)} s (RATE_LIMIT_REQUESTS). ` +
          `Try again in ${Math.ceil(state.resetMs / 1000)} s.`,
        state,
      );
    }
  }

  /** Counts in Redis; in this process alone while Redis fails the count (or just failed), warning when that starts and ends. */
  async #count(keyHash: string): Promise<RateLimiterRes> {
    // Redis failed a moment ago (the key check saw it): count in memory without waiting on it first.
    if (this.#coolOff?.active) return this.#inMemory.consume(keyHash);
    let res: RateLimiterRes;
    try {
      res = await this.#limiter.consume(keyHash);
    } catch (err) {
      // A RateLimiterRes is the verdict (over the limit); anything else is Redis failing the count.
      if (err instanceof RateLimiterRes) throw err;
      if (!this.#alone) {
        this.#alone = true;
        this.#log.warn({ err }, "request rate limit: Redis failed the count; this instance counts alone until it answers");
      }
      return this.#inMemory.consume(keyHash);
    }
    if (this.#alone) {
      this.#alone = false;
      this.#log.warn("request rate limit: counted in Redis again, shared by every API instance");
    }
    return res;
  }

  #state(res: RateLimiterRes): LimitState {
    return { kind: "requests", limit: this.#points, remaining: res.remainingPoints, resetMs: res.msBeforeNext };
  }
}
