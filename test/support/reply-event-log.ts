import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, inject } from "vitest";
import { ReplyEventFollower } from "../../src/streams/reply-event-follower.ts";
import { ReplyEventLog } from "../../src/streams/reply-events.ts";
import { startOwnRedis, type OwnRedis } from "./redis-server.ts";

export interface ReplyEventLogContext {
  redis: Redis;
  log: ReplyEventLog;
  /** The redis-server of its own, when asked for one (to kill and restart). */
  own: OwnRedis;
}

/**
 * A reply event log for the tests of one scope (a file or a `describe`), filled in by `beforeAll`: on the
 * shared Redis under `prefix` (its keys deleted afterwards), or with `own: true` on a redis-server of its
 * own, through a connection that fails commands fast while it reconnects, as the service's does.
 */
export function useReplyEventLog(prefix: string, opts: { own?: boolean } = {}): ReplyEventLogContext {
  const ctx = {} as ReplyEventLogContext;
  beforeAll(async () => {
    if (opts.own) {
      ctx.own = await startOwnRedis();
      ctx.redis = new Redis(ctx.own.url, { maxRetriesPerRequest: 2 });
      ctx.redis.on("error", () => {});
    } else {
      ctx.redis = new Redis(inject("redisUrl"));
    }
    ctx.log = new ReplyEventLog({ redis: ctx.redis, prefix, ttlSeconds: 60 });
  });
  afterAll(async () => {
    if (opts.own) {
      ctx.redis?.disconnect();
      await ctx.own?.kill();
      return;
    }
    const keys = await ctx.redis.keys(`${prefix}:*`);
    if (keys.length) await ctx.redis.del(...keys);
    ctx.redis.disconnect();
  });
  return ctx;
}

export interface ReplyEventFollowerContext {
  redis: Redis;
  /** The follower's subscriber connection (in subscribe mode: drop it to test a reconnect). */
  subscriber: Redis;
  log: ReplyEventLog;
  follower: ReplyEventFollower;
}

/**
 * A reply event log on the shared Redis under `prefix` and a follower of it, for the tests of one scope,
 * filled in by `beforeAll`; the follower is closed and the prefix's keys deleted afterwards.
 */
export function useReplyEventFollower(prefix: string, opts: { stallMs?: number; sharded?: boolean } = {}): ReplyEventFollowerContext {
  const ctx = {} as ReplyEventFollowerContext;
  beforeAll(() => {
    ctx.redis = new Redis(inject("redisUrl"));
    ctx.subscriber = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    ctx.log = new ReplyEventLog({ redis: ctx.redis, prefix, ttlSeconds: 60, ...(opts.sharded ? { sharded: true } : {}) });
    ctx.follower = new ReplyEventFollower({ subscriber: ctx.subscriber, commands: ctx.redis, log: pino({ level: "silent" }), ...opts });
  });
  afterAll(async () => {
    await ctx.follower.close();
    const keys = await ctx.redis.keys(`${prefix}:*`);
    if (keys.length) await ctx.redis.del(...keys);
    ctx.redis.disconnect();
    ctx.subscriber.disconnect();
  });
  return ctx;
}
