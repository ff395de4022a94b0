import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RequestRateLimiter } from "../../src/access/request-rate.ts";
import { RateLimitedError } from "../../src/domain/errors.ts";
import { startOwnRedis, type OwnRedis } from "../support/redis-server.ts";

/**
 * While Redis fails the count, each API instance counts alone (it must not refuse every request), and says
 * so: the warning is what tells an operator the limit is no longer shared (a cluster answering CROSSSLOT
 * once made it count alone without a word).
 */
let own: OwnRedis;
let redis: Redis;
const lines: { msg: string; level: number }[] = [];
const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
beforeAll(async () => {
  own = await startOwnRedis();
  redis = new Redis(own.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, commandTimeout: 500 });
  redis.on("error", () => {}); // refused while it is down, on purpose
});
afterAll(async () => {
  redis?.disconnect();
  await own?.kill();
});

const waitUntil = async (check: () => boolean) => {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
};

describe("the request-rate limiter when Redis fails", () => {
  it("counts alone while Redis is away, warns once when that starts and once when Redis counts again", async () => {
    const limiter = new RequestRateLimiter({ redis, prefix: `parley-test-${randomBytes(4).toString("hex")}`, requests: 3, windowSeconds: 60, log });
    const key = "k1";
    await waitUntil(() => redis.status === "ready");
    expect((await limiter.take(key)).remaining).toBe(2);
    expect(lines).toEqual([]);

    await own.kill();
    await waitUntil(() => redis.status !== "ready");
    // In memory, from a full budget: the shared count is out of reach.
    expect((await limiter.take(key)).remaining).toBe(2);
    expect((await limiter.take(key)).remaining).toBe(1);
    const alone = lines.filter((l) => l.msg.includes("counts alone"));
    expect(alone).toHaveLength(1);
    expect(alone[0]!.level).toBe(40);

    await own.start();
    await waitUntil(() => redis.status === "ready");
    // Redis restarted empty: the shared count starts over, and the limiter says it is shared again.
    expect((await limiter.take(key)).remaining).toBe(2);
    expect(lines.filter((l) => l.msg.includes("counted in Redis again"))).toHaveLength(1);
    expect(lines.filter((l) => l.msg.includes("counts alone"))).toHaveLength(1);
    await limiter.take(key);
    await limiter.take(key);
    await expect(limiter.take(key)).rejects.toBeInstanceOf(RateLimitedError);
  });
});
