import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { StreamedReply, streamedReplyOf } from "../../src/domain/reply-delta.ts";
import { ReplyEventsUnavailableError, ReplyEventWriter, ReplyStreamClosedError } from "../../src/streams/reply-event-writer.ts";
import { useReplyEventLog } from "../support/reply-event-log.ts";

/** What a reply streams besides text (tool-call fragments, reasoning, logprobs): put together, and accounted like text. */

const prefix = `parley-test-${randomBytes(4).toString("hex")}`;
const newId = () => `msg_${randomBytes(8).toString("hex")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const end = (id: string) => [
  { event: "message.completed" as const, data: { id, status: "completed" } },
  { event: "done" as const, data: "[DONE]" },
];

describe("putting a streamed reply together", () => {
  it("builds parallel tool calls from OpenAI-style fragments (id, type and name once, arguments in pieces)", () => {
    const r = new StreamedReply();
    r.add({ toolCalls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }] });
    r.add({ toolCalls: [{ index: 0, function: { arguments: '{"ci' } }] });
    r.add({ toolCalls: [{ index: 1, id: "call_b", type: "function", function: { name: "get_time" } }] });
    r.add({ toolCalls: [{ index: 0, function: { arguments: 'ty":"Lisbon"}' } }, { index: 1, function: { arguments: "{}" } }] });
    expect(r.toolCalls).toEqual([
      { id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Lisbon"}' } },
      { id: "call_b", type: "function", function: { name: "get_time", arguments: "{}" } },
    ]);
  });

  it("keeps Together-style fragments (id repeated on each) as one call", () => {
    const r = new StreamedReply();
    r.add({ toolCalls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: "{" } }] });
    r.add({ toolCalls: [{ index: 0, id: "c1", type: "function", function: { arguments: "}" } }] });
    expect(r.toolCalls).toEqual([{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }]);
  });

  it("joins OpenAI logprobs chunks into one { content } and keeps other shapes as a list", () => {
    const openai = new StreamedReply();
    openai.add({ logprobs: [{ content: [{ token: "a", logprob: -1 }] }] });
    openai.add({ logprobs: [{ content: [{ token: "b", logprob: -2 }] }] });
    expect(openai.logprobs).toEqual({ content: [{ token: "a", logprob: -1 }, { token: "b", logprob: -2 }] });
    const together = new StreamedReply();
    together.add({ logprobs: [{ tokens: ["a"], token_logprobs: [-1] }] });
    expect(together.logprobs).toEqual([{ tokens: ["a"], token_logprobs: [-1] }]);
  });

  it("reads a stream's events back, starting over at a reset, with when its first token was written", () => {
    const delta = (id: string, d: object) => ({ id, event: "message.delta", data: JSON.stringify({ id: "m", delta: d }) });
    const r = streamedReplyOf([
      delta("1000-0", { content: "lost" }),
      { id: "2000-0", event: "message.reset", data: "{}" },
      delta("2500-0", { logprobs: [{ content: [] }] }),
      delta("3000-0", { reasoning: "hm" }),
      delta("4000-0", { tool_calls: [{ index: 0, id: "c", type: "function", function: { name: "f", arguments: "{}" } }] }),
    ]);
    expect([r.content, r.reasoning, r.toolCalls]).toEqual(["", "hm", [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }]]);
    expect(r.firstTokenMs).toBe(3000);
    expect(streamedReplyOf([{ id: "1000-0", event: "message.created", data: "{}" }]).firstTokenMs).toBeNull();
  });
});

describe("the writer's account of tool calls and reasoning", () => {
  const replyLog = useReplyEventLog(prefix);

  it("publishes tool-call and reasoning deltas, and what it published is what the stream holds", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 1_000 });
    await writer.start();
    await writer.delta({ reasoning: "think" });
    await writer.delta({ toolCalls: [{ index: 0, id: "c", type: "function", function: { name: "f", arguments: '{"a"' } }] });
    // A delta is handed over at once; drain waits for its write.
    await writer.drain();
    await replyLog.log.seal(id);
    await expect(writer.delta({ toolCalls: [{ index: 0, function: { arguments: ":1}" } }] }).then(() => writer.drain())).rejects.toBeInstanceOf(
      ReplyStreamClosedError,
    );
    // The refused fragment is neither in the stream nor in what the run stores.
    const held = streamedReplyOf(await replyLog.log.readAfter(id, null));
    expect(writer.publishedReply.toolCalls).toEqual([{ id: "c", type: "function", function: { name: "f", arguments: '{"a"' } }]);
    expect(held.toolCalls).toEqual(writer.publishedReply.toolCalls);
    expect(held.reasoning).toBe("think");
    expect(writer.publishedReply.reasoning).toBe("think");
    // The first token's time is its event's: the run that stores the reply and a reader of its events agree.
    expect(writer.publishedReply.firstTokenMs).toBe(held.firstTokenMs);
    expect(held.firstTokenMs).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe("the writer's account while Redis is away", () => {
  const replyLog = useReplyEventLog(prefix, { own: true });

  it("holds tool-call fragments through a restart and starts the lost stream over with the whole calls", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 20_000 });
    await writer.start();
    await writer.delta({ reasoning: "plan", toolCalls: [{ index: 0, id: "c0", type: "function", function: { name: "f", arguments: "" } }] });
    await writer.drain();
    await replyLog.own.kill();
    for (const piece of ['{"x"', ":", "1", "}"]) {
      await writer.delta({ toolCalls: [{ index: 0, function: { arguments: piece } }] });
      await sleep(50);
    }
    await replyLog.own.start();
    await writer.delta({ toolCalls: [{ index: 1, id: "c1", type: "function", function: { name: "g", arguments: "{}" } }] });
    expect(await writer.end(end(id))).toBe("ok");
    const expected = [
      { id: "c0", type: "function", function: { name: "f", arguments: '{"x":1}' } },
      { id: "c1", type: "function", function: { name: "g", arguments: "{}" } },
    ];
    expect(writer.publishedReply.toolCalls).toEqual(expected);
    const held = streamedReplyOf(await replyLog.log.readAfter(id, null));
    expect(held.toolCalls).toEqual(expected);
    expect(held.reasoning).toBe("plan");
  }, 60_000);

  it("past the bound has published only what the stream took", async () => {
    const id = newId();
    const writer = new ReplyEventWriter({ events: replyLog.log, replyId: id, attempt: 1, outageMs: 1_500 });
    await writer.start();
    await writer.delta({ reasoning: "kept" });
    await writer.drain();
    await replyLog.own.kill();
    await writer.delta({ reasoning: " lost", toolCalls: [{ index: 0, id: "c", type: "function", function: { name: "f", arguments: "{}" } }] });
    await expect(writer.drain()).rejects.toBeInstanceOf(ReplyEventsUnavailableError);
    expect(writer.publishedReply.reasoning).toBe("kept");
    expect(writer.publishedReply.toolCalls).toBeNull();
    await replyLog.own.start();
  }, 60_000);
});
