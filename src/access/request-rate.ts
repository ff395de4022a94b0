import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { RateLimitedError, type LimitState } from "../domain/errors.ts";

/**
 * Requests per API key per window, counted in Redis so every API instance
 * shares one budget per key. While Redis is away (refused, or timed out on a
 * partition: the connection has a command timeout) each instance counts on its
 * own (the library's insurance limiter) rather than refusing every request.
 */
export class RequestRateLimiter {
  readonly #limiter: RateLimiterRedis;
  readonly #points: number;

  constructor(opts: { redis: Redis; prefix: string; requests: number; windowSeconds: number }) {
    this.#points = opts.requests;
    this.#limiter = new RateLimiterRedis({
      storeClient: opts.redis,
      keyPrefix: `${opts.prefix}:rate`,
      points: opts.requests,
      duration: opts.windowSeconds,
      insuranceLimiter: new RateLimiterMemory({ points: opts.requests, duration: opts.windowSeconds }),
    });
  }

  /** Counts one request of `keyId`; throws RateLimitedError when the window's budget is spent. */
  async take(keyId: string): Promise<LimitState> {
    try {
      return this.#state(await this.#limiter.consume(keyId));
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

  #state(res: RateLimiterRes): LimitState {
    return { kind: "requests", limit: this.#points, remaining: res.remainingPoints, resetMs: res.msBeforeNext };
  }
}
