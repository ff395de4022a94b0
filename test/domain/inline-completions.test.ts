import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { ReplySlots } from "../../src/domain/reply-slots.ts";
import { ModelNotFoundError } from "../../src/domain/errors.ts";
import { eventValue, runStatelessCompletion, serveInlineCompletion, type StatelessCompletionRequest } from "../../src/domain/stateless-completions.ts";
import { ModelRegistry } from "../../src/providers/registry.ts";
import { ProviderError, type ChatChunk, type ChatProvider } from "../../src/providers/types.ts";
import type { NewReplyEvent, ReplyEvent, ReplyEventLog } from "../../src/streams/reply-events.ts";

/**
 * A stateless call without an Idempotency-Key, served in the API process: the
 * same events a worker's run writes to the stream, the tenant's slot held
 * while it runs, and the upstream call stopped when its reader leaves.
 */

const request: StatelessCompletionRequest = { model: "m", messages: [{ role: "user", content: "hi" }], params: {}, upstreamStream: true };

/** Slots that record what happened to them, in order, with what had been read by then. */
function recordingSlots(log: string[]): ReplySlots {
  return {
    acquire: async (_tenant, id) => void log.push(`acquire ${id}`),
    release: async (_tenant, id) => void log.push(`release ${id}`),
  };
}

function providerOf(chunks: (signal: AbortSignal) => AsyncIterable<ChatChunk>): ChatProvider {
  return { name: "stub", streamChat: (_req, signal) => chunks(signal), completeChat: () => Promise.reject(new Error("not used")) };
}

async function readAll(events: AsyncIterable<ReplyEvent>, log: string[] = []): Promise<ReplyEvent[]> {
  const read: ReplyEvent[] = [];
  for await (const e of events) {
    log.push(`read ${e.event}`);
    read.push(e);
  }
  return read;
}

/** What a worker's run writes for the same provider, through an event log held in memory. */
async function writtenByWorker(provider: ChatProvider): Promise<{ event: string; data: string }[]> {
  const written: { event: string; data: string }[] = [];
  const log = {
    async write(_id: string, events: NewReplyEvent[]) {
      for (const e of events) written.push({ event: e.event, data: typeof e.data === "string" ? e.data : JSON.stringify(e.data) });
      return { status: "ok" as const, ids: events.map((_, i) => `1-${i}`) };
    },
  };
  await runStatelessCompletion(
    {
      models: new ModelRegistry().addModels(["m"], provider, "test"),
      replyEvents: log as unknown as ReplyEventLog,
      replySlots: recordingSlots([]),
      log: pino({ level: "silent" }),
      replyWriteBounds: { eventsOutageMs: 30_000, finalWriteRetryMs: 1_000 },
      cancellations: { watch: () => ({ signal: new AbortController().signal, done: () => {} }) },
    },
    { kind: "completion", completionId: "chatcmpl_same", tenantId: "t", ...request },
    { signal: new AbortController().signal, restarted: false, attempt: 1 },
  );
  return written;
}

/** Ids differ between two calls: compared without them. */
const withoutId = (e: { event: string; data: string }) => ({ event: e.event, data: e.data === "[DONE]" ? e.data : { ...JSON.parse(e.data), id: "x" } });

describe("a stateless call served inline", () => {
  it("relays the same events a worker's run writes, and gives its slot back before its end is read", async () => {
    const chunks = async function* (): AsyncIterable<ChatChunk> {
      yield { type: "delta", choice: 0, content: "zero" };
      yield { type: "delta", choice: 1, content: "one" };
      yield { type: "delta", choice: 0, reasoning: "hm" };
      yield { type: "finish", choice: 0, finishReason: "stop", usage: null };
      yield { type: "finish", choice: 1, finishReason: "length", usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } };
    };
    const steps: string[] = [];
    const deps = { models: new ModelRegistry().addModels(["m"], providerOf(chunks), "test"), replySlots: recordingSlots(steps), log: pino({ level: "silent" }) };
    const call = await serveInlineCompletion(deps, "t", request, new AbortController().signal);
    const read = await readAll(call.follow(new AbortController().signal), steps);
    const worker = (await writtenByWorker(providerOf(chunks))).filter((e) => e.event !== "message.created");
    expect(read.map(withoutId)).toEqual(worker.map(withoutId));
    // The relay takes an inline event's data as the object it was made from: what its JSON text says.
    for (const e of read) expect(e.event === "done" ? eventValue(e) : JSON.parse(JSON.stringify(eventValue(e)))).toEqual(e.event === "done" ? e.data : JSON.parse(e.data));
    expect(read.map((e) => e.event)).toEqual(["message.delta", "message.delta", "message.delta", "message.completed", "done"]);
    expect(steps.indexOf(`release ${call.id}`)).toBeLessThan(steps.indexOf("read message.completed"));
    expect(steps.filter((s) => s.startsWith("release"))).toHaveLength(1);
  });

  it("does not hold its end back until Redis answers the slot's give-back, nor fail when it cannot", async () => {
    const chunks = async function* (): AsyncIterable<ChatChunk> {
      yield { type: "delta", choice: 0, content: "hi" };
      yield { type: "finish", choice: 0, finishReason: "stop", usage: null };
    };
    for (const answer of ["never", "fails"] as const) {
      const released: string[] = [];
      const replySlots: ReplySlots = {
        acquire: async () => {},
        release: (_tenant, id) => {
          released.push(id);
          return answer === "never" ? new Promise<void>(() => {}) : Promise.reject(new Error("Redis is away"));
        },
      };
      const deps = { models: new ModelRegistry().addModels(["m"], providerOf(chunks), "test"), replySlots, log: pino({ level: "silent" }) };
      const call = await serveInlineCompletion(deps, "t", request, new AbortController().signal);
      const read = await readAll(call.follow(new AbortController().signal));
      expect(read.map((e) => e.event)).toEqual(["message.delta", "message.completed", "done"]);
      expect(released).toEqual([call.id]);
    }
  });

  it("ends failed with the upstream's error, as a worker's run does", async () => {
    const chunks = async function* (): AsyncIterable<ChatChunk> {
      yield* [];
      throw new ProviderError("upstream said no", { code: "upstream_error", upstreamStatus: 400 });
    };
    const deps = { models: new ModelRegistry().addModels(["m"], providerOf(chunks), "test"), replySlots: recordingSlots([]), log: pino({ level: "silent" }) };
    const call = await serveInlineCompletion(deps, "t", request, new AbortController().signal);
    const read = await readAll(call.follow(new AbortController().signal));
    const worker = (await writtenByWorker(providerOf(chunks))).filter((e) => e.event !== "message.created");
    expect(read.map(withoutId)).toEqual(worker.map(withoutId));
    expect(JSON.parse(read[0]!.data)).toMatchObject({ status: "failed", error: { status: 400, message: "upstream said no" } });
  });

  it("stops the upstream call and gives the slot back when its reader leaves", async () => {
    let upstreamSignal: AbortSignal | null = null;
    const chunks = (signal: AbortSignal) =>
      (async function* (): AsyncIterable<ChatChunk> {
        upstreamSignal = signal;
        yield { type: "delta", content: "first" };
        await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
      })();
    const steps: string[] = [];
    const deps = { models: new ModelRegistry().addModels(["m"], providerOf(chunks), "test"), replySlots: recordingSlots(steps), log: pino({ level: "silent" }) };
    const call = await serveInlineCompletion(deps, "t", request, new AbortController().signal);
    const leave = new AbortController();
    for await (const e of call.follow(leave.signal)) {
      expect(e.event).toBe("message.delta");
      leave.abort();
    }
    expect(upstreamSignal!.aborted).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(steps).toEqual([`acquire ${call.id}`, `release ${call.id}`]);
  });

  it("stops the upstream call when the client goes before anything was read", async () => {
    let upstreamSignal: AbortSignal | null = null;
    const chunks = (signal: AbortSignal) =>
      (async function* (): AsyncIterable<ChatChunk> {
        upstreamSignal = signal;
        await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
      })();
    const steps: string[] = [];
    const deps = { models: new ModelRegistry().addModels(["m"], providerOf(chunks), "test"), replySlots: recordingSlots(steps), log: pino({ level: "silent" }) };
    const client = new AbortController();
    const call = await serveInlineCompletion(deps, "t", request, client.signal);
    client.abort();
    await new Promise((r) => setImmediate(r));
    expect(upstreamSignal!.aborted).toBe(true);
    expect(steps).toEqual([`acquire ${call.id}`, `release ${call.id}`]);
  });

  it("refuses a model nobody serves before it takes a slot", async () => {
    const steps: string[] = [];
    const deps = { models: new ModelRegistry(), replySlots: recordingSlots(steps), log: pino({ level: "silent" }) };
    await expect(serveInlineCompletion(deps, "t", request, new AbortController().signal)).rejects.toBeInstanceOf(ModelNotFoundError);
    expect(steps).toEqual([]);
  });
});
