import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ReplyEventsUnavailableError, ReplyEventWriter, ReplyStreamClosedError } from "../../src/streams/reply-event-writer.ts";
import type { ReplyEvent } from "../../src/streams/reply-events.ts";
import { useReplyEventLog } from "../support/reply-event-log.ts";

const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const newId = () => `msg_${randomBytes(8).toString("hex")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const names = (events: ReplyEvent[]) => events.map((e) => e.event);
function contentOf(events: ReplyEvent[]): string {
  let content = "";
  for (const e of events) {
    if (e.event === "message.reset") content = "";
    if (e.event === "message.delta") content += JSON.parse(e.data).delta.content;
  }
  return content;
}
const end = (id: string) => [
  { event: "message.completed" as const, data: { id, status: "completed" } },
  { event: "done" as const, data: "[DONE]" },
];

describe("the reply's fence", () => {
  const replyLog = useReplyEventLog(prefix);

  it("takes nothing after the end: no delta, no second end", async () => {
    const id = newId();
    await replyLog.log.append(id, [{ event: "message.created", data: { id } }]);
    expect((await replyLog.log.end(id, end(id))).status).toBe("ok");
    expect(await replyLog.log.write(id, [{ event: "message.delta", data: { id, delta: { content: "late" } } }], { attempt: 1, seq: 1 })).toEqual({ status: "ended" });
    expect(await replyLog.log.appendDelta(id, { id, delta: { content: "late" } })).toBe("");
    expect((await replyLog.log.end(id, end(id))).status).toBe("ended");
    expect(names(await replyLog.log.readAfter(id, null))).toEqual(["message.created", "message.completed", "done"]);
    // The fence lives as long as the stream.
    expect(await replyLog.redis.ttl(`${prefix}:reply-fence:{${id}}`)).toBeGreaterThan(0);
  });

  it("refuses an older attempt once a newer one has written, and takes a retried write once", async () => {
    const id = newId();
    const delta = (content: string) => [{ event: "message.delta" as const, data: { id, delta: { content } } }];
    expect((await replyLog.log.write(id, delta("one"), { attempt: 1, seq: 1 })).status).toBe("ok");
    expect(await replyLog.log.write(id, delta("one"), { attempt: 1, seq: 1 })).toEqual({ status: "written" });
    expect((await replyLog.log.write(id, [], { attempt: 2, seq: 1 })).status).toBe("ok");
    expect(await replyLog.log.write(id, delta("two"), { attempt: 1, seq: 2 })).toEqual({ status: "superseded" });
    expect(await replyLog.log.end(id, end(id), { attempt: 1, seq: 3 })).toEqual({ status: "superseded" });
    expect((await replyLog.log.write(id, delta("mine"), { attempt: 2, seq: 2 })).status).toBe("ok");
    expect(contentOf(await replyLog.log.readAfter(id, null))).toBe("onemine");
  });

  it("once sealed, refuses deltas but takes one end", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 1_000 });
    await writer.start();
    await writer.delta("kept");
    // A delta is handed over at once; drain waits for its write.
    await writer.drain();
    await replyLog.log.seal(id);
    await expect(writer.delta(" refused").then(() => writer.drain())).rejects.toBeInstanceOf(ReplyStreamClosedError);
    expect(writer.stopped.aborted).toBe(true);
    expect(writer.published).toBe("kept");
    expect((await replyLog.log.end(id, end(id))).status).toBe("ok");
    expect(contentOf(await replyLog.log.readAfter(id, null))).toBe("kept");
  });
});

describe("a run's writer under load", () => {
  const replyLog = useReplyEventLog(prefix);

  it("writes the deltas handed over during a write together in the next one, each its own event, in order", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 1_000 });
    await writer.start();
    let writes = 0;
    const write = replyLog.log.write.bind(replyLog.log);
    replyLog.log.write = (...args) => (writes++, write(...args));
    try {
      // As a model call hands them on: each awaited, none waiting on a round trip to Redis.
      for (let i = 0; i < 100; i++) await writer.delta(` t${i}`);
      await writer.drain();
    } finally {
      replyLog.log.write = write;
    }
    const deltas = (await replyLog.log.readAfter(id, null)).filter((e) => e.event === "message.delta");
    expect(deltas.map((e) => JSON.parse(e.data).delta.content)).toEqual(Array.from({ length: 100 }, (_, i) => ` t${i}`));
    expect(writer.published).toBe(Array.from({ length: 100 }, (_, i) => ` t${i}`).join(""));
    expect(writes).toBeLessThan(10);
  });
});

describe("a run's writer behind a slow Redis", () => {
  const replyLog = useReplyEventLog(prefix);

  it("holds at most 256 deltas: the next waits until a write takes them", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 1_000 });
    await writer.start();
    const write = replyLog.log.write.bind(replyLog.log);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    replyLog.log.write = async (...args) => (await gate, write(...args));
    try {
      await writer.delta("first"); // its write waits at the gate
      for (let i = 0; i < 255; i++) await writer.delta(` ${i}`);
      let taken = false;
      const next = writer.delta(" next").then(() => (taken = true));
      await sleep(50);
      expect(taken).toBe(false);
      release();
      await next;
      await writer.drain();
    } finally {
      replyLog.log.write = write;
    }
    expect(writer.published).toBe(`first${Array.from({ length: 255 }, (_, i) => ` ${i}`).join("")} next`);
  });
});

describe("a run's writer while Redis is away", () => {
  const replyLog = useReplyEventLog(prefix, { own: true });

  it("holds the deltas in order through a restart and writes them once it is back, starting the lost stream over", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 20_000 });
    await writer.start();
    let expected = "";
    for (let i = 0; i < 5; i++) await writer.delta(` a${i}`), (expected += ` a${i}`);
    await writer.drain();
    await replyLog.own.kill();
    // Each delta is taken at once while Redis is away (held, not waited for).
    for (let i = 0; i < 20; i++) {
      await writer.delta(` b${i}`);
      expected += ` b${i}`;
      await sleep(50);
    }
    await replyLog.own.start();
    for (let i = 0; i < 5; i++) await writer.delta(` c${i}`), (expected += ` c${i}`);
    expect(await writer.end(end(id))).toBe("ok");
    expect(writer.published).toBe(expected);
    const events = await replyLog.log.readAfter(id, null);
    // Redis came back empty: the stream starts over with everything written before, then goes on.
    expect(names(events)[0]).toBe("message.reset");
    expect(contentOf(events)).toBe(expected);
    expect(names(events).slice(-2)).toEqual(["message.completed", "done"]);
    // Held deltas went out together, not one write each.
    expect(events.filter((e) => e.event === "message.delta").length).toBeLessThan(20);
  }, 60_000);

  it("gives up past the bound, having published exactly what the stream holds, and still writes the end once Redis is back", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 1_500 });
    await writer.start();
    await writer.delta("before");
    await writer.drain();
    await replyLog.own.kill();
    await writer.delta(" during");
    await expect(writer.drain()).rejects.toBeInstanceOf(ReplyEventsUnavailableError);
    expect(writer.stopped.aborted).toBe(true);
    await expect(writer.delta(" after")).rejects.toBeInstanceOf(ReplyEventsUnavailableError);
    expect(writer.published).toBe("before");
    await replyLog.own.start();
    expect(await writer.end(end(id))).toBe("ok");
    // Redis came back empty: the end starts the stream over with what was published.
    expect(contentOf(await replyLog.log.readAfter(id, null))).toBe("before");
  }, 60_000);
});
