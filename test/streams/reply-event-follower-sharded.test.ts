import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { compareStreamIds, type ReplyEvent } from "../../src/streams/reply-events.ts";
import { useReplyEventFollower } from "../support/reply-event-log.ts";

/**
 * Sharded pub/sub (SPUBLISH/SSUBSCRIBE), as Parley uses it on a Redis Cluster, on the shared single Redis
 * (7.0 has it too): a follower joining mid-reply gets what came before from the stream and the rest as
 * published, and the events are not on the classic channel any more.
 */
const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const replyEvents = useReplyEventFollower(prefix, { sharded: true });
let classic: Redis;
const onClassicChannel: string[] = [];
beforeAll(async () => {
  classic = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
  classic.on("pmessage", (_pattern: string, channel: string) => onClassicChannel.push(channel));
  await classic.psubscribe(`${prefix}:*`);
});
afterAll(() => classic?.disconnect());

async function collect(iter: AsyncIterable<ReplyEvent>): Promise<ReplyEvent[]> {
  const out: ReplyEvent[] = [];
  for await (const e of iter) out.push(e);
  return out;
}

describe("following reply events over sharded pub/sub", () => {
  it("relays every event after the follower's position, in order, ending at done", async () => {
    const id = `msg_${randomBytes(4).toString("hex")}`;
    const key = replyEvents.log.key(id);
    await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    for (let i = 0; i < 5; i++) await replyEvents.log.appendDelta(id, { id, delta: { content: `early${i} ` } });
    const following = collect(replyEvents.follower.follow(key, null));
    // Published after the follower subscribed: these arrive over SSUBSCRIBE, not from the stream read.
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 20; i++) await replyEvents.log.appendDelta(id, { id, delta: { content: `late${i} ` } });
    await replyEvents.log.append(id, [
      { event: "message.completed", data: { id, status: "completed" } },
      { event: "done", data: "[DONE]" },
    ]);
    const events = await following;
    expect(events.map((e) => e.event)).toEqual(["message.created", ...Array(25).fill("message.delta"), "message.completed", "done"]);
    const deltas = events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content).join("");
    expect(deltas).toBe([...Array(5).keys()].map((i) => `early${i} `).join("") + [...Array(20).keys()].map((i) => `late${i} `).join(""));
    const ids = events.map((e) => e.id);
    expect([...ids].sort(compareStreamIds)).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(onClassicChannel).toEqual([]);
  });
});
