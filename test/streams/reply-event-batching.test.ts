import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { eventBatches, ReplyEventQueue } from "../../src/streams/reply-event-queue.ts";
import { ReplyEventFollower } from "../../src/streams/reply-event-follower.ts";
import { ReplyEventLog, type ReplyEvent } from "../../src/streams/reply-events.ts";
import { useReplyEventFollower } from "../support/reply-event-log.ts";

const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const newId = () => `msg_${randomBytes(8).toString("hex")}`;
const replyEvents = useReplyEventFollower(prefix);

const delta = (id: string, content: string) => ({ event: "message.delta" as const, data: { id, delta: { content } } });

describe("a follower's events", () => {
  it("come as the batches they arrived in: the events of one write together, for one socket write", async () => {
    const id = newId();
    const key = replyEvents.log.key(id);
    const batches: ReplyEvent[][] = [];
    const done = (async () => {
      for await (const batch of eventBatches(replyEvents.follower.follow(key, null))) batches.push(batch);
    })();
    await vi.waitFor(() => expect(replyEvents.follower.size).toBe(1));
    // Subscribed and caught up: the next write is relayed from its publication.
    await new Promise((r) => setTimeout(r, 50));
    await replyEvents.log.append(id, [delta(id, "a"), delta(id, "b"), delta(id, "c")]);
    await vi.waitFor(() => expect(batches).toHaveLength(1));
    await replyEvents.log.append(id, [{ event: "message.completed", data: { id } }, { event: "done", data: "[DONE]" }]);
    await done;
    expect(batches.map((b) => b.map((e) => e.event))).toEqual([
      ["message.delta", "message.delta", "message.delta"],
      ["message.completed", "done"],
    ]);
    expect(replyEvents.follower.size).toBe(0);
  });

  it("stop being followed when their consumer leaves, as when it reads the end", async () => {
    const id = newId();
    await replyEvents.log.append(id, [delta(id, "a"), delta(id, "b")]);
    for await (const e of replyEvents.follower.follow(replyEvents.log.key(id), null)) {
      expect(e.event).toBe("message.delta");
      break;
    }
    expect(replyEvents.follower.size).toBe(0);
  });

  it("queue without bound and end after what was queued", async () => {
    const closed = vi.fn();
    const queue = new ReplyEventQueue(closed);
    for (let i = 0; i < 1_000; i++) queue.push({ id: `1-${i}`, event: "message.delta", data: "{}" });
    queue.end();
    queue.push({ id: "2-0", event: "message.delta", data: "{}" });
    const seen: string[] = [];
    for await (const e of queue) seen.push(e.id);
    expect(seen).toHaveLength(1_000);
    expect(seen.at(-1)).toBe("1-999");
    expect(closed).toHaveBeenCalledTimes(1);
  });
});
