import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { ReplySlots } from "../../src/access/reply-slots.ts";
import { runStatelessCompletion, type CompletionEnd } from "../../src/domain/stateless-completions.ts";
import { ModelRegistry } from "../../src/providers/registry.ts";
import type { ChatChunk, ChatProvider } from "../../src/providers/types.ts";
import type { CompletionJob } from "../../src/queue/completions.ts";
import type { NewReplyEvent, ReplyEventLog } from "../../src/streams/reply-events.ts";

/**
 * A stateless completion with several choices, against an event log held in
 * memory that can be made unreachable: every choice's deltas reach the stream
 * under their own index, even when a Redis outage makes the writer hold and
 * join deltas.
 */

interface Written {
  event: string;
  data: any;
}

function memoryLog() {
  const written: Written[] = [];
  const seqs = new Set<number>();
  let down = false;
  const log = {
    async write(_id: string, events: NewReplyEvent[], opts: { seq?: number }) {
      if (down) throw new Error("Redis is down");
      if (opts.seq !== undefined) {
        if (seqs.has(opts.seq)) return { status: "written" as const };
        seqs.add(opts.seq);
      }
      for (const e of events) written.push({ event: e.event, data: e.data });
      return { status: "ok" as const, ids: events.map((_, i) => `1-${i}`) };
    },
  };
  return {
    log: log as unknown as ReplyEventLog,
    written,
    setDown: (value: boolean) => void (down = value),
  };
}

const delta = (choice: number, content: string): ChatChunk => ({ type: "delta", choice, content });

async function run(chunks: (log: ReturnType<typeof memoryLog>) => AsyncIterable<ChatChunk>) {
  const memory = memoryLog();
  const provider: ChatProvider = {
    name: "stub",
    streamChat: () => chunks(memory),
    completeChat: () => Promise.reject(new Error("not used")),
  };
  const job: CompletionJob = {
    kind: "completion",
    completionId: "chatcmpl_test",
    tenantId: "t",
    model: "m",
    messages: [{ role: "user", content: "two ways" }],
    params: { n: 2 },
    upstreamStream: true,
  };
  await runStatelessCompletion(
    {
      models: new ModelRegistry().addModels(["m"], provider, "test"),
      replyEvents: memory.log,
      replySlots: { release: async () => {} } as unknown as ReplySlots,
      log: pino({ level: "silent" }),
      replyWriteBounds: { eventsOutageMs: 30_000, finalWriteRetryMs: 1_000 },
      cancellations: { watch: () => ({ signal: new AbortController().signal, done: () => {} }) },
    },
    job,
    { signal: new AbortController().signal, restarted: false, attempt: 1 },
  );
  const deltas = memory.written.filter((w) => w.event === "message.delta").map((w) => w.data);
  const end = memory.written.find((w) => w.event === "message.completed")?.data as CompletionEnd | undefined;
  return { deltas, end };
}

/** Each choice's text, put together from the delta events. */
function textsByChoice(deltas: any[]): Record<number, string> {
  const texts: Record<number, string> = {};
  for (const d of deltas) texts[d.choice ?? 0] = (texts[d.choice ?? 0] ?? "") + (d.delta.content ?? "");
  return texts;
}

describe("a stateless completion's choices", () => {
  it("each choice's deltas are written under its index, and the end carries every choice", async () => {
    const { deltas, end } = await run(async function* () {
      yield delta(0, "zero");
      yield delta(1, "one");
      yield delta(0, " more");
      yield { type: "finish", choice: 0, finishReason: "length", usage: null };
      yield { type: "finish", choice: 1, finishReason: "stop", usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } };
    });
    expect(deltas.map((d) => [d.choice ?? 0, d.delta])).toEqual([
      [0, { content: "zero" }],
      [1, { content: "one" }],
      [0, { content: " more" }],
    ]);
    expect(end).toMatchObject({
      status: "completed",
      content: "zero more",
      finish_reason: "length",
      usage: { total_tokens: 4 },
      choices: [
        { index: 0, content: "zero more", finish_reason: "length" },
        { index: 1, content: "one", finish_reason: "stop" },
      ],
    });
  });

  it("deltas held through a Redis outage are never joined across choices", async () => {
    const { deltas, end } = await run(async function* (memory) {
      yield delta(0, "a");
      yield delta(1, "b");
      // Redis goes away for a moment: the writer holds what comes meanwhile.
      memory.setDown(true);
      setTimeout(() => memory.setDown(false), 300);
      yield delta(0, "c");
      yield delta(0, "C");
      yield delta(1, "d");
      yield delta(0, "e");
      yield { type: "finish", choice: 0, finishReason: "stop", usage: null };
      yield { type: "finish", choice: 1, finishReason: "stop", usage: null };
    });
    expect(textsByChoice(deltas)).toEqual({ 0: "acCe", 1: "bd" });
    expect(end?.choices?.map((c) => c.content)).toEqual(["acCe", "bd"]);
  });

  it("asks for one choice: the end is as a reply's, without a choices list", async () => {
    const { deltas, end } = await run(async function* () {
      yield { type: "delta", choice: 0, reasoning: "hm" };
      yield { type: "delta", choice: 0, toolCalls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] };
      yield { type: "finish", choice: 0, finishReason: "tool_calls", usage: null };
    });
    expect(deltas.map((d) => d.delta)).toEqual([
      { reasoning: "hm" },
      { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] },
    ]);
    expect(end).toMatchObject({
      status: "completed",
      content: "",
      reasoning: "hm",
      tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }],
      finish_reason: "tool_calls",
    });
    expect(end?.choices).toBeUndefined();
  });
});
