/**
 * Whether Redis failed a request-path check a moment ago. The checks that can
 * do without Redis (the key lookup asks Postgres, the rate limit counts in
 * memory) skip it for `ms` after a failure instead of each waiting out
 * REDIS_COMMAND_TIMEOUT_MS again: during a partition every request would
 * otherwise pay one timeout per check. Turns still ask Redis (they need it)
 * and fail on their own timeout. A dozen lines rather than a circuit-breaker
 * library: those wrap one function each, and here two checks share one verdict.
 */
export class RedisCoolOff {
  readonly #ms: number;
  #until = 0;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** True while a recent failure says not to wait on Redis. */
  get active(): boolean {
    return Date.now() < this.#until;
  }

  failed(): void {
    this.#until = Date.now() + this.#ms;
  }
}
