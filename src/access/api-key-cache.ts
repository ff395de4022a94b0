import type { RedisClient } from "../redis/client.ts";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { findActiveApiKey, type KeyHolder, type RevocationListener } from "../domain/api-keys.ts";
import type { RedisCoolOff } from "./redis-cool-off.ts";

const REVOKED = "revoked";

/**
 * Who an API key acts for: looked up in Postgres once, then remembered in
 * Redis (shared by every API instance) for `ttlSeconds`. A revocation
 * overwrites the remembered entry with a marker, so every instance refuses the
 * key from the next request on. Entries are written with NX, so a lookup that
 * read Postgres just before a revocation cannot put the key back.
 */
export class ApiKeyAuthenticator implements RevocationListener {
  readonly #db: Database;
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #ttlSeconds: number;
  readonly #log: Logger;
  readonly #coolOff: RedisCoolOff | undefined;

  constructor(opts: { db: Database; redis: RedisClient; prefix: string; ttlSeconds: number; log: Logger; coolOff?: RedisCoolOff }) {
    this.#db = opts.db;
    this.#redis = opts.redis;
    this.#prefix = opts.prefix;
    this.#ttlSeconds = opts.ttlSeconds;
    this.#log = opts.log;
    this.#coolOff = opts.coolOff;
  }

  #cacheKey(keyHash: string): string {
    return `${this.#prefix}:api-key:${keyHash}`;
  }

  /** The holder of the key whose hash (hashApiKey) is `keyHash`, or null for anything that is not an active key of ours. */
  async authenticate(keyHash: string): Promise<KeyHolder | null> {
    const cacheKey = this.#cacheKey(keyHash);
    // Redis failed a moment ago: Postgres alone decides for now, without waiting on Redis first.
    if (this.#coolOff?.active) return findActiveApiKey(this.#db, keyHash);
    let cached: string | null;
    try {
      cached = await this.#redis.get(cacheKey);
    } catch (err) {
      this.#coolOff?.failed();
      // Redis away, or unreachable and timed out (the connection has a command timeout, so a partition
      // is an error here too, not a wait): Postgres alone decides, which is slower but as strict.
      this.#log.warn({ err }, "api key cache unavailable");
      return findActiveApiKey(this.#db, keyHash);
    }
    if (cached === REVOKED) return null;
    if (cached !== null) return JSON.parse(cached) as KeyHolder;
    const holder = await findActiveApiKey(this.#db, keyHash);
    if (holder) {
      await this.#redis.set(cacheKey, JSON.stringify(holder), "EX", this.#ttlSeconds, "NX").catch(() => {});
    }
    return holder;
  }

  /** Marks the key revoked for every instance; kept well past any entry a slow lookup could still write. */
  async revoked(keyHash: string): Promise<void> {
    await this.#redis.set(this.#cacheKey(keyHash), REVOKED, "EX", Math.max(3600, this.#ttlSeconds * 4));
  }
}
