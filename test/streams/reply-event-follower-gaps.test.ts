import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ReplyEventFollower, type RecordedEnd } from "../../src/streams/reply-event-follower.ts";
import type { ReplyEvent } from "../../src/streams/reply-events.ts";
import { followedContent } from "../support/http.ts";
import { eventually, sleep } from "../support/waiting.ts";
import { useReplyEventLog } from "../support/reply-event-log.ts";

/**
 * What a follower is sent adds up to the stored reply (applying
 * `message.reset` as "drop what you had"), even when it missed events while
 * Redis was away: published while its subscriber was reconnecting, or lost
 * with a Redis that restarted empty before its end could be read.
 */

const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const silent = pino({ level: "silent" });
const replyLog = useReplyEventLog(prefix);

const newReplyId = () => `msg_${randomBytes(6).toString("hex")}`;

/** Follows in the background, keeping what arrived so far. */
function collect(iter: AsyncIterable<ReplyEvent>) {
  const events: ReplyEvent[] = [];
  const done = (async () => {
    for await (const e of iter) events.push(e);
    return events;
  })();
  return { events, done };
}


const delta = (id: string, content: string) => replyLog.log.appendDelta(id, { id, delta: { content } });
const end = (id: string, content: string) =>
  replyLog.log.end(id, [
    { event: "message.completed", data: { id, status: "completed", content } },
    { event: "done", data: "[DONE]" },
  ]);

describe("a follower whose subscriber reconnects", () => {
  let subscriber: Redis;
  let follower: ReplyEventFollower;
  beforeAll(() => {
    subscriber = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    follower = new ReplyEventFollower({ subscriber, commands: replyLog.redis, log: silent, stallMs: 60_000 });
  });
  afterAll(async () => {
    await follower.close();
    subscriber.disconnect();
  });

  it("gets what was published before the subscription was confirmed again, read from the stream", async () => {
    const id = newReplyId();
    await replyLog.log.append(id, [{ event: "message.created", data: { id } }]);
    const subscriberId = await subscriber.client("ID");
    const following = collect(follower.follow(replyLog.log.key(id), null));
    await delta(id, "A");
    await eventually(async () => following.events.some((e) => e.event === "message.delta"), { what: "the first delta arrives", timeoutMs: 20_000, everyMs: 20 });

    // The SUBSCRIBEs sent after the reconnect reach Redis late (a slow link), as ioredis sends its own only
    // after announcing the connection ready.
    const subscribe = subscriber.subscribe.bind(subscriber) as (...channels: string[]) => Promise<unknown>;
    (subscriber as unknown as { subscribe: typeof subscribe }).subscribe = (...channels) => sleep(300).then(() => subscribe(...channels));
    const ready = once(subscriber, "ready");
    await replyLog.redis.client("KILL", "ID", String(subscriberId));
    await ready;
    // Published while the subscriber is connected but not subscribed yet.
    await delta(id, "B");
    await sleep(600);
    await delta(id, "C");
    await end(id, "ABC");

    const events = await following.done;
    expect(followedContent(events)).toBe("ABC");
    expect(events.map((e) => e.event)).toEqual(["message.created", "message.delta", "message.delta", "message.delta", "message.completed", "done"]);
  }, 30_000);
});

describe("a follower ending from the stored row after its events were lost", () => {
  let subscriber: Redis;
  let follower: ReplyEventFollower;
  beforeAll(() => {
    subscriber = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    follower = new ReplyEventFollower({ subscriber, commands: replyLog.redis, log: silent, stallMs: 200 });
  });
  afterAll(async () => {
    await follower.close();
    subscriber.disconnect();
  });

  /** A reply streamed "Hello" to a follower, then Redis lost its events; the row ended with `stored`. */
  async function lostAfterHello(stored: string, resumed = false) {
    const id = newReplyId();
    const [createdId] = await replyLog.log.append(id, [{ event: "message.created", data: { id } }]);
    let recorded: RecordedEnd | null = null;
    const following = collect(follower.follow(replyLog.log.key(id), resumed ? createdId! : null, { recordedEnd: async () => recorded }));
    await delta(id, "Hello");
    await eventually(async () => following.events.some((e) => e.event === "message.delta"), { what: "the delta arrives", timeoutMs: 20_000, everyMs: 20 });
    await replyLog.redis.del(replyLog.log.key(id), `${prefix}:reply-fence:{${id}}`);
    recorded = {
      event: "message.completed",
      data: JSON.stringify({ id, status: "completed", content: stored }),
      endedAt: Date.now(),
      reply: { id, content: stored },
    };
    return following.done;
  }

  it("is sent the rest of the stored content before the end", async () => {
    const events = await lostAfterHello("Hello world");
    expect(followedContent(events)).toBe("Hello world");
    expect(events.map((e) => e.event)).toEqual(["message.created", "message.delta", "message.delta", "message.completed", "done"]);
  });

  it("starts over with the stored content when what it was given is not where it starts", async () => {
    const events = await lostAfterHello("Goodbye");
    expect(followedContent(events)).toBe("Goodbye");
    expect(events.map((e) => e.event)).toEqual(["message.created", "message.delta", "message.reset", "message.delta", "message.completed", "done"]);
    expect(JSON.parse(events[2]!.data)).toMatchObject({ reason: "events_lost" });
  });

  it("starts over with the stored content when it resumed mid-reply (what it had before is not known)", async () => {
    const events = await lostAfterHello("Hello world", true);
    expect(events.map((e) => e.event)).toEqual(["message.delta", "message.reset", "message.delta", "message.completed", "done"]);
    expect(followedContent(events)).toBe("Hello world");
  });
});
