import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ReplyEventFollower, awaitReplyEnd, type RecordedEnd } from "../../src/streams/reply-event-follower.ts";
import { ReplyEventLog, compareStreamIds, type ReplyEvent } from "../../src/streams/reply-events.ts";
import { freePort } from "../support/processes.ts";
import { useReplyEventFollower } from "../support/reply-event-log.ts";

/**
 * A follower whose reply's events stop (the end was never written: Redis
 * restarted, a worker died after storing the reply) ends from the reply's
 * record once the stream has been idle for the stall bound.
 */

const STALL_MS = 200;
const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const silent = pino({ level: "silent" });
const replyEvents = useReplyEventFollower(prefix, { stallMs: STALL_MS });

async function collect(iter: AsyncIterable<ReplyEvent>): Promise<ReplyEvent[]> {
  const out: ReplyEvent[] = [];
  for await (const e of iter) out.push(e);
  return out;
}

const newReplyId = () => `msg_${randomBytes(6).toString("hex")}`;

/** A record that says "in flight" until `end()` is called, counting how often it was asked. */
function fakeRecord(endedAt = Date.now()) {
  let ended: RecordedEnd | null = null;
  const record = {
    checks: 0,
    end(status: "completed" | "failed" | "cancelled", content: string) {
      ended = { event: `message.${status}`, data: JSON.stringify({ status, content }), endedAt };
    },
    check: async () => {
      record.checks++;
      return ended;
    },
  };
  return record;
}

const deltas = (events: ReplyEvent[]) =>
  events.filter((e) => e.event === "message.delta").map((e) => (JSON.parse(e.data) as { delta: { content: string } }).delta.content);

describe("a follower whose reply's events stop", () => {
  it("ends from the record once the reply has ended there: the end event, then done, with ids after the last delivered", async () => {
    const id = newReplyId();
    const [createdId] = await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const record = fakeRecord(1); // an end time before the stream's ids: the ids must still come after them
    const following = collect(replyEvents.follower.follow(replyEvents.log.key(id), null, { recordedEnd: record.check }));
    await replyEvents.log.appendDelta(id, { id, delta: { content: "Hello" } });
    await replyEvents.log.appendDelta(id, { id, delta: { content: " world" } });
    // Still in flight: checked (the stream is idle), and the follower keeps waiting.
    while (record.checks < 2) await new Promise((r) => setTimeout(r, 20));
    expect(replyEvents.follower.size).toBeGreaterThan(0);
    record.end("completed", "Hello world");

    const events = await following;
    expect(events.map((e) => e.event)).toEqual(["message.created", "message.delta", "message.delta", "message.completed", "done"]);
    expect(events[0]!.id).toBe(createdId);
    expect(deltas(events).join("")).toBe("Hello world");
    expect(JSON.parse(events[3]!.data)).toEqual({ status: "completed", content: "Hello world" });
    for (let i = 1; i < events.length; i++) expect(compareStreamIds(events[i]!.id, events[i - 1]!.id)).toBeGreaterThan(0);
  });

  it("takes its end event ids from when the reply ended, as a replay from the stored row does", async () => {
    const id = newReplyId();
    await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const endedAt = Date.now() + 60_000;
    const record = fakeRecord(endedAt);
    record.end("failed", "");
    const events = await collect(replyEvents.follower.follow(replyEvents.log.key(id), null, { recordedEnd: record.check }));
    expect(events.slice(1).map((e) => [e.event, e.id])).toEqual([
      ["message.failed", `${endedAt}-1`],
      ["done", `${endedAt}-2`],
    ]);
  });

  it("delivers the stream's own end when only its publication was missed, without a second end", async () => {
    const id = newReplyId();
    await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const record = fakeRecord();
    const following = collect(replyEvents.follower.follow(replyEvents.log.key(id), null, { recordedEnd: record.check }));
    while (record.checks < 1) await new Promise((r) => setTimeout(r, 20));
    // Written to the stream but never published (as when the subscriber missed it).
    await replyEvents.redis.xadd(replyEvents.log.key(id), "*", "event", "message.delta", "data", JSON.stringify({ id, delta: { content: "kept" } }));
    await replyEvents.redis.xadd(replyEvents.log.key(id), "*", "event", "message.completed", "data", JSON.stringify({ status: "completed", content: "kept" }));
    await replyEvents.redis.xadd(replyEvents.log.key(id), "*", "event", "done", "data", "[DONE]");
    record.end("completed", "kept");
    const events = await following;
    expect(events.map((e) => e.event)).toEqual(["message.created", "message.delta", "message.completed", "done"]);
  });

  it("adds only done when the end event had been delivered", async () => {
    const id = newReplyId();
    await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const record = fakeRecord();
    const following = collect(replyEvents.follower.follow(replyEvents.log.key(id), null, { recordedEnd: record.check }));
    await replyEvents.log.append(id, [{ event: "message.cancelled", data: { status: "cancelled", content: "" } }]);
    record.end("cancelled", "");
    const events = await following;
    expect(events.map((e) => e.event)).toEqual(["message.created", "message.cancelled", "done"]);
  });

  it("keeps following a stream that goes on, and ends with its own end", async () => {
    const id = newReplyId();
    await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const record = fakeRecord();
    const following = collect(replyEvents.follower.follow(replyEvents.log.key(id), null, { recordedEnd: record.check }));
    // A delta every STALL_MS / 4: the stream never stalls, so its record is never asked.
    for (let i = 0; i < 12; i++) {
      await replyEvents.log.appendDelta(id, { id, delta: { content: `${i} ` } });
      await new Promise((r) => setTimeout(r, STALL_MS / 4));
    }
    await replyEvents.log.append(id, [
      { event: "message.completed", data: { status: "completed" } },
      { event: "done", data: "[DONE]" },
    ]);
    const events = await following;
    expect(events.at(-1)?.event).toBe("done");
    expect(events.filter((e) => e.event === "message.completed")).toHaveLength(1);
    expect(deltas(events)).toHaveLength(12);
  });

  it("ends a waiting caller (awaitReplyEnd) from the record", async () => {
    const id = newReplyId();
    await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const record = fakeRecord();
    record.end("completed", "from the row");
    const end = await awaitReplyEnd(replyEvents.follower, replyEvents.log.key(id), new AbortController().signal, record.check);
    expect(end).toEqual({ status: "completed", content: "from the row" });
  });
});

describe("a follower whose Redis is unreachable", () => {
  it("still ends from the record", async () => {
    const port = await freePort(); // nothing listens there
    const deadRedis = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    const deadSubscriber = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: null, retryStrategy: () => 200 });
    deadRedis.on("error", () => {});
    deadSubscriber.on("error", () => {});
    const cut = new ReplyEventFollower({ subscriber: deadSubscriber, commands: deadRedis, log: silent, stallMs: STALL_MS });
    try {
      const record = fakeRecord(Date.now());
      record.end("completed", "stored while Redis was away");
      const events = await collect(cut.follow(`${prefix}:reply-events:{${newReplyId()}}`, "1-0", { recordedEnd: record.check }));
      expect(events.map((e) => e.event)).toEqual(["message.completed", "done"]);
      expect(compareStreamIds(events[0]!.id, "1-0")).toBeGreaterThan(0);
      expect(cut.size).toBe(0);
    } finally {
      await cut.close();
      deadRedis.disconnect();
      deadSubscriber.disconnect();
    }
  });
});
