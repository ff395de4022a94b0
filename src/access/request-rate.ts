import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { RateLimitedError, type LimitState } from "../domain/errors.ts";
import type { RedisCoolOff } from "./redis-cool-off.ts";

/**
 * Requests per API key per window, counted in Redis so every API instance
 * shares one budget per key. While Redis is away (refused, or timed out on a
 * partition: the connection has a command timeout) each instance counts on its
 * own (the library's insurance limiter) rather than refusing every request.
 */
export class RequestRateLimiter {
  readonly #limiter: RateLimiterRedis;
  readonly #inMemory: RateLimiterMemory;
  readonly #points: number;
  readonly #coolOff: RedisCoolOff | undefined;

  constructor(opts: { redis: Redis; prefix: string; requests: number; windowSeconds: number; coolOff?: RedisCoolOff }) {
    this.#points = opts.requests;
    this.#coolOff = opts.coolOff;
    this.#inMemory = new RateLimiterMemory({ points: opts.requests, duration: opts.windowSeconds });
    this.#limiter = new RateLimiterRedis({
      storeClient: opts.redis,
      keyPrefix: `${opts.prefix}:rate`,
      points: opts.requests,
      duration: opts.windowSeconds,
      insuranceLimiter: this.#inMemory,
    });
  }

  /** Counts one request of the key `keyHash` (hashApiKey); throws RateLimitedError when the window's budget is spent. */
  async take(keyHash: string): Promise<LimitState> {
    // Redis failed a moment ago (the key check saw it): count in memory without waiting on it first.
    const limiter = this.#coolOff?.active ? this.#inMemory : this.#limiter;
    try {
      return this.#state(await limiter.consume(keyHash));
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      const state = this.#state(err);
      throw new RateLimitedError(
        `Rate limit reached: ${this.#points} requests per key per ${Math.round(limiter.duration)} s (RATE_LIMIT_REQUESTS). ` +
          `Try again in ${Math.ceil(state.resetMs / 1000)} s.`,
        state,
      );
    }
  }

  #state(res: RateLimiterRes): LimitState {
    return { kind: "requests", limit: this.#points, remaining: res.remainingPoints, resetMs: res.msBeforeNext };
  }
}
