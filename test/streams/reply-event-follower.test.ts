import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ReplyEventFollower, awaitReplyEnd } from "../../src/streams/reply-event-follower.ts";
import { ReplyEventLog, type ReplyEvent } from "../../src/streams/reply-events.ts";
import { useReplyEventFollower } from "../support/reply-event-log.ts";

const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const replyEvents = useReplyEventFollower(prefix);

async function collect(iter: AsyncIterable<ReplyEvent>): Promise<ReplyEvent[]> {
  const out: ReplyEvent[] = [];
  for await (const e of iter) out.push(e);
  return out;
}

const finish = (id: string) =>
  replyEvents.log.append(id, [
    { event: "message.completed", data: { id, status: "completed" } },
    { event: "done", data: "[DONE]" },
  ]);

describe("following reply events", () => {
  it("gives each follower every event after its own position, in order, ending at done", async () => {
    const id = `msg_${randomBytes(4).toString("hex")}`;
    const [createdId] = await replyEvents.log.append(id, [{ event: "message.created", data: { id } }]);
    const fromStart = collect(replyEvents.follower.follow(replyEvents.log.key(id), null));
    const fromCreated = collect(replyEvents.follower.follow(replyEvents.log.key(id), createdId!));
    for (let i = 0; i < 20; i++) await replyEvents.log.appendDelta(id, { id, delta: { content: `t${i}` } });
    const late = collect(replyEvents.follower.follow(replyEvents.log.key(id), null)); // joins mid-reply, from the start
    await finish(id);

    const [a, b, c] = await Promise.all([fromStart, fromCreated, late]);
    expect(a.map((e) => e.event)).toEqual(["message.created", ...Array(20).fill("message.delta"), "message.completed", "done"]);
    expect(b).toEqual(a.slice(1));
    expect(c).toEqual(a);
    expect(a.at(-1)?.data).toBe("[DONE]");
    expect(replyEvents.follower.size).toBe(0);
  });

  it("replays a finished reply at once", async () => {
    const id = `msg_${randomBytes(4).toString("hex")}`;
    await replyEvents.log.appendDelta(id, { id, delta: { content: "x" } });
    await finish(id);
    const events = await collect(replyEvents.follower.follow(replyEvents.log.key(id), null));
    expect(events.map((e) => e.event)).toEqual(["message.delta", "message.completed", "done"]);
  });

  it("follows many replies at once over one connection", async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `msg_many${i}_${randomBytes(3).toString("hex")}`);
    const followed = ids.map((id) => collect(replyEvents.follower.follow(replyEvents.log.key(id), null)));
    await Promise.all(
      ids.map(async (id, i) => {
        await replyEvents.log.appendDelta(id, { id, delta: { content: `only ${i}` } });
        await finish(id);
      }),
    );
    const results = await Promise.all(followed);
    results.forEach((events, i) => {
      expect(events.map((e) => e.event)).toEqual(["message.delta", "message.completed", "done"]);
      expect(JSON.parse(events[0]!.data).delta.content).toBe(`only ${i}`);
    });
  });

  it("recovers from the stream what was published while the subscriber was reconnecting", async () => {
    const id = `msg_${randomBytes(4).toString("hex")}`;
    const following = collect(replyEvents.follower.follow(replyEvents.log.key(id), null));
    await replyEvents.log.appendDelta(id, { id, delta: { content: "before " } });
    await new Promise((r) => setTimeout(r, 50));
    replyEvents.subscriber.disconnect(true); // drops the connection; ioredis reconnects and subscribes again
    await replyEvents.log.appendDelta(id, { id, delta: { content: "during " } });
    await new Promise((r) => replyEvents.subscriber.once("ready", r));
    await replyEvents.log.appendDelta(id, { id, delta: { content: "after" } });
    await finish(id);
    const events = await following;
    expect(events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content).join("")).toBe(
      "before during after",
    );
    expect(events.at(-1)?.event).toBe("done");
  });

  it("stops following when the signal aborts", async () => {
    const id = `msg_${randomBytes(4).toString("hex")}`;
    const ctl = new AbortController();
    const pending = awaitReplyEnd(replyEvents.follower, replyEvents.log.key(id), ctl.signal);
    await new Promise((r) => setTimeout(r, 50));
    ctl.abort();
    await expect(pending).rejects.toThrow();
    expect(replyEvents.follower.size).toBe(0);
  });
});
