import type { Logger } from "pino";
import type { StoredError } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import type { ChatMessage, ChatProvider, ChatRequest, FinishReason, TokenUsage, ToolCall } from "../providers/types.ts";
import type { CompletionJob, JobRun, ModelJobQueue } from "../queue/completions.ts";
import type { CancellationListener } from "../queue/reply-cancellation.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import { ReplyEventWriter, ReplyStreamClosedError } from "../streams/reply-event-writer.ts";
import type { ReplyEvent, ReplyEventLog, ReplyEventName } from "../streams/reply-events.ts";
import { DependencyUnavailableError, ModelNotFoundError } from "./errors.ts";
import { newCompletionId } from "./ids.ts";
import { describeFailure } from "./model-call.ts";
import { deltaEventData, isEmptyDelta, StreamedReply, type ReplyDelta } from "./reply-delta.ts";
import { StorableTextStream, storableText } from "./storable-text.ts";
import type { ReplyWriteBounds } from "./reply-generation.ts";
import { modelCallSpan } from "../observability/model-call-spans.ts";

/**
 * The stateless chat-completions API: nothing is stored in Postgres. A call
 * with an Idempotency-Key goes through the same queue, worker pool and event
 * stream as a conversation's reply, since a retry with its key is answered
 * from that stream. One without a key can be resumed by nobody, so it is
 * served inline (serveInlineCompletion): the API calls the provider itself
 * and relays its chunks, with the same bounds and the same events.
 */

export interface StatelessCompletionRequest {
  model: string;
  messages: ChatMessage[];
  params: Record<string, unknown>;
  upstreamStream: boolean;
  retainEventsSeconds?: number;
  /** The request that asked for it, named in the worker's log lines. */
  requestId?: string;
}

/** One choice of a completion's end. */
export interface CompletionChoice {
  index: number;
  content: string;
  reasoning: string | null;
  tool_calls: ToolCall[] | null;
  logprobs: unknown;
  finish_reason: string | null;
}

/**
 * What a completion's end event carries: the fields a reply's message
 * resource has too (the first choice's), and every choice when it asked for
 * more than one.
 */
export interface CompletionEnd {
  id: string;
  status: "completed" | "failed" | "cancelled";
  content: string;
  reasoning?: string | null;
  tool_calls?: ToolCall[] | null;
  logprobs?: unknown;
  finish_reason: string | null;
  usage: TokenUsage | null;
  error: StoredError | null;
  choices?: CompletionChoice[];
}

/** Where a call's deltas go: the reply's event stream (a worker's run), or the client directly (inline). */
interface DeltaSink {
  delta(delta: ReplyDelta): Promise<void>;
  /** Waits until every delta handed over is taken; throws why not, if they cannot be. */
  drain(): Promise<void>;
}

type ChoicesOutcome =
  | { status: "completed"; finishReasons: Map<number, FinishReason>; usage: TokenUsage | null }
  | { status: "failed"; error: StoredError; cause?: unknown };

/**
 * Calls the provider and hands every choice's deltas to the stream as they
 * come (a non-streamed answer as one delta per choice). Text is made storable
 * as a reply's is, each choice on its own. `choices` gathers what was handed
 * over, by choice: the first choice's is also what the writer published.
 * Traced as a `chat {model}` span, with no conversation id (nothing is stored).
 */
function callForEveryChoice(opts: Parameters<typeof callEveryChoice>[0]): Promise<ChoicesOutcome> {
  return modelCallSpan({ provider: opts.provider.name, model: opts.request.model }, () => callEveryChoice(opts));
}

async function callEveryChoice(opts: {
  provider: ChatProvider;
  request: ChatRequest;
  upstreamStream: boolean;
  signal: AbortSignal;
  events: DeltaSink;
  choices: Map<number, StreamedReply>;
}): Promise<ChoicesOutcome> {
  const texts = new Map<number, { content: StorableTextStream; reasoning: StorableTextStream }>();
  let pendingChoice = 0;
  const handOn = async (choice: number, delta: ReplyDelta) => {
    if (isEmptyDelta(delta)) return;
    // Held deltas are joined while Redis is away: never two choices' (see ReplyDelta.choice).
    if (choice !== pendingChoice) await opts.events.drain();
    pendingChoice = choice;
    let reply = opts.choices.get(choice);
    if (!reply) opts.choices.set(choice, (reply = new StreamedReply()));
    reply.add(delta);
    await opts.events.delta(choice ? { ...delta, choice } : delta);
  };
  const textsOf = (choice: number) => {
    let t = texts.get(choice);
    if (!t) texts.set(choice, (t = { content: new StorableTextStream(), reasoning: new StorableTextStream() }));
    return t;
  };
  try {
    if (!opts.upstreamStream) {
      const result = await opts.provider.completeChat(opts.request, opts.signal);
      const finishReasons = new Map<number, FinishReason>();
      for (const [index, choice] of result.choices.entries()) {
        await handOn(index, {
          ...(choice.content ? { content: storableText(choice.content) } : {}),
          ...(choice.reasoning ? { reasoning: storableText(choice.reasoning) } : {}),
          ...(choice.toolCalls ? { toolCalls: choice.toolCalls.map((call, i) => ({ index: i, ...call })) } : {}),
          ...(choice.logprobs !== undefined ? { logprobs: [choice.logprobs] } : {}),
        });
        finishReasons.set(index, choice.finishReason);
      }
      return { status: "completed", finishReasons, usage: result.usage };
    }
    const finishReasons = new Map<number, FinishReason>();
    let usage: TokenUsage | null = null;
    for await (const chunk of opts.provider.streamChat(opts.request, opts.signal)) {
      const choice = chunk.choice ?? 0;
      if (chunk.type === "finish") {
        finishReasons.set(choice, chunk.finishReason);
        if (chunk.usage) usage = chunk.usage;
        continue;
      }
      const text = textsOf(choice);
      await handOn(choice, {
        ...(chunk.content ? { content: text.content.push(chunk.content) } : {}),
        ...(chunk.reasoning ? { reasoning: text.reasoning.push(chunk.reasoning) } : {}),
        ...(chunk.toolCalls ? { toolCalls: chunk.toolCalls } : {}),
        ...(chunk.logprobs !== undefined ? { logprobs: [chunk.logprobs] } : {}),
      });
    }
    for (const [choice, text] of [...texts.entries()].sort(([a], [b]) => a - b)) {
      await handOn(choice, { content: text.content.end(), reasoning: text.reasoning.end() });
    }
    return { status: "completed", finishReasons, usage };
  } catch (cause) {
    return { status: "failed", error: describeFailure(cause), cause };
  }
}

/** The end event: the first choice from what the stream holds; the others, when asked for, from what was handed over. */
function completionEnd(id: string, outcome: ChoicesOutcome, published: StreamedReply, choices: Map<number, StreamedReply>): CompletionEnd {
  const first = {
    content: published.content,
    reasoning: published.reasoning || null,
    tool_calls: published.toolCalls,
    logprobs: published.logprobs,
  };
  if (outcome.status === "failed") {
    return { id, status: "failed", ...first, finish_reason: null, usage: null, error: outcome.error };
  }
  const indexes = [...new Set([0, ...outcome.finishReasons.keys(), ...choices.keys()])].sort((a, b) => a - b);
  const end: CompletionEnd = {
    id,
    status: "completed",
    ...first,
    finish_reason: outcome.finishReasons.get(0) ?? "stop",
    usage: outcome.usage,
    error: null,
  };
  if (indexes.length > 1) {
    end.choices = indexes.map((index) => {
      const reply = index === 0 ? published : choices.get(index);
      return {
        index,
        content: reply?.content ?? "",
        reasoning: reply?.reasoning || null,
        tool_calls: reply?.toolCalls ?? null,
        logprobs: reply?.logprobs ?? null,
        finish_reason: outcome.finishReasons.get(index) ?? "stop",
      };
    });
  }
  return end;
}

/**
 * An inline call's event: its data kept as the object it was made from, for
 * its one reader in this process (`eventValue`), and made JSON text only if
 * read as text: a stream's event is text because it travels through Redis.
 */
class InlineEvent implements ReplyEvent {
  readonly id: string;
  readonly event: ReplyEventName;
  readonly value: unknown;
  #text: string | undefined;

  constructor(id: string, event: ReplyEventName, value: unknown) {
    this.id = id;
    this.event = event;
    this.value = value;
  }

  get data(): string {
    return (this.#text ??= typeof this.value === "string" ? this.value : JSON.stringify(this.value));
  }
}

/** An event's data as an object: an inline event's as it was made, a stream's parsed from its JSON text. */
export const eventValue = (e: ReplyEvent): unknown => (e instanceof InlineEvent ? e.value : JSON.parse(e.data));

/**
 * An inline call's events, handed from the running call to its one reader in
 * order: never more than the call says, so held in memory as a stream holds them.
 */
class InlineEvents {
  readonly #held: ReplyEvent[] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  #seq = 0;

  push(event: ReplyEventName, data: unknown): void {
    if (this.#closed) return;
    // Ids as a stream's would look: the chat-completions relay does not send them, but a ReplyEvent has one.
    this.#held.push(new InlineEvent(`0-${++this.#seq}`, event, data));
    this.#wakeReader();
  }

  close(): void {
    this.#closed = true;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** The events until the call closes them, or `signal` aborts (the reader left: `onLeave` runs). */
  async *read(signal: AbortSignal, onLeave: () => void): AsyncGenerator<ReplyEvent> {
    const leave = () => this.#wakeReader();
    signal.addEventListener("abort", leave, { once: true });
    try {
      for (;;) {
        if (signal.aborted) return;
        const next = this.#held.shift();
        if (next) {
          yield next;
          continue;
        }
        if (this.#closed) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      signal.removeEventListener("abort", leave);
      // A reader that stopped before the end is the only one there was: nobody is left to answer.
      if (!this.#closed) onLeave();
    }
  }
}

/** A call served in the API process: its id, and its events for the one client that asked. */
export interface InlineCompletion {
  id: string;
  /** The call's deltas, then its end and `done`, as a worker would write them to the stream. Read once. */
  follow(signal: AbortSignal): AsyncIterable<ReplyEvent>;
}

/**
 * Serves a stateless call without an Idempotency-Key in the calling process:
 * nobody could resume it (no key, nothing stored), so it skips the queue, the
 * worker and the event stream. It holds the tenant's reply slot for as long as
 * it runs, calls the provider with the same bounds (the registry's providers
 * carry the first-token and idle timeouts and the retries) and the same code
 * as a worker's run, and ends with the same events. The client leaving
 * (`clientGone`, or its reader stopping early) aborts the upstream call.
 */
export async function serveInlineCompletion(
  deps: { models: ModelRegistry; replySlots: ReplySlots; log: Logger },
  tenantId: string,
  request: StatelessCompletionRequest,
  clientGone: AbortSignal,
): Promise<InlineCompletion> {
  const resolved = deps.models.resolve(request.model);
  if (!resolved) throw new ModelNotFoundError(request.model, deps.models.describeServed());
  const id = newCompletionId();
  await deps.replySlots.acquire(tenantId, id);
  const stop = new AbortController();
  const signal = AbortSignal.any([clientGone, stop.signal]);
  const events = new InlineEvents();
  const choices = new Map<number, StreamedReply>();
  const sink: DeltaSink = {
    async delta(delta) {
      const choice = delta.choice ? { choice: delta.choice } : {};
      events.push("message.delta", { id, ...choice, delta: deltaEventData(delta) });
    },
    async drain() {},
  };
  // Sent, not waited for: the end is not held back by a Redis round trip. It is issued before the end is
  // handed on, so a client calling again on the end finds the slot free: on this instance its next commands
  // queue behind the release on the same connection (Redis applies a connection's commands in order); on
  // another, its key check's round trip comes first, while the release leaves within this event-loop turn.
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    deps.replySlots.release(tenantId, id).catch((err: unknown) => deps.log.warn({ err }, "could not give back the reply slot"));
  };
  void (async () => {
    try {
      const outcome = await callForEveryChoice({
        provider: resolved.provider,
        request: { model: resolved.upstreamModel, messages: request.messages, params: request.params },
        upstreamStream: request.upstreamStream,
        signal,
        events: sink,
        choices,
      });
      // Abandoned: nobody reads the end.
      if (signal.aborted) return;
      if (outcome.status === "failed") deps.log.warn({ completionId: id, code: outcome.error.code }, "completion failed");
      const end = completionEnd(id, outcome, choices.get(0) ?? new StreamedReply(), choices);
      // Given back before the end is sent, as a worker does: a client that calls again on the end finds it free.
      release();
      events.push(outcome.status === "completed" ? "message.completed" : "message.failed", end);
      events.push("done", "[DONE]");
    } catch (err) {
      deps.log.error({ err, completionId: id }, "an inline completion failed inside Parley");
      const end: CompletionEnd = { id, status: "failed", content: "", finish_reason: null, usage: null, error: describeFailure(err) };
      release();
      events.push("message.failed", end);
    } finally {
      events.close();
      release();
    }
  })();
  return { id, follow: (readerSignal) => events.read(readerSignal, () => stop.abort()) };
}

export async function startStatelessCompletion(
  deps: { models: ModelRegistry; jobQueue: ModelJobQueue; replyEvents: ReplyEventLog; replySlots: ReplySlots },
  tenantId: string,
  request: StatelessCompletionRequest,
): Promise<{ id: string }> {
  if (!deps.models.resolve(request.model)) throw new ModelNotFoundError(request.model, deps.models.describeServed());
  const id = newCompletionId();
  await deps.replySlots.acquire(tenantId, id);
  try {
    // Opens the event stream with its retention before any worker writes to it.
    await deps.replyEvents.append(
      id,
      [{ event: "message.created", data: { id, status: "queued", model: request.model } }],
      request.retainEventsSeconds,
    );
    await deps.jobQueue.enqueue({ kind: "completion", completionId: id, tenantId, ...request });
  } catch (cause) {
    await deps.replySlots.release(tenantId, id).catch(() => {});
    throw Object.assign(new DependencyUnavailableError("The job queue (Redis)"), { cause });
  }
  return { id };
}

/** The worker's side: provider → event stream, fenced and riding out short Redis outages as a reply's run does. */
export async function runStatelessCompletion(
  deps: {
    models: ModelRegistry;
    replyEvents: ReplyEventLog;
    replySlots: ReplySlots;
    log: Logger;
    replyWriteBounds: ReplyWriteBounds;
    cancellations: Pick<CancellationListener, "watch">;
  },
  job: CompletionJob,
  run: JobRun,
): Promise<void> {
  const id = job.completionId;
  // Watched before the stream is claimed: a cancel signal for its id (publishCancel) stops the run at once.
  const abandoned = deps.cancellations.watch(id);
  const events = new ReplyEventWriter({
    events: deps.replyEvents,
    replyId: id,
    attempt: run.attempt,
    outageMs: deps.replyWriteBounds.eventsOutageMs,
    signal: run.signal,
    ...(job.retainEventsSeconds === undefined ? {} : { ttlSeconds: job.retainEventsSeconds }),
  });
  const started = await events
    .start(run.restarted ? [{ event: "message.reset", data: { id, reason: "worker_lost" } }] : [])
    .then(() => null, (err: unknown) => err);
  if (started instanceof ReplyStreamClosedError) {
    abandoned.done();
    return;
  }
  const resolved = deps.models.resolve(job.model);
  const choices = new Map<number, StreamedReply>();
  let outcome: ChoicesOutcome = started
    ? { status: "failed", error: describeFailure(started) }
    : resolved
      ? await callForEveryChoice({
          provider: resolved.provider,
          request: { model: resolved.upstreamModel, messages: job.messages, params: job.params },
          upstreamStream: job.upstreamStream,
          signal: AbortSignal.any([run.signal, abandoned.signal, events.stopped]),
          events,
          choices,
        })
      : {
          status: "failed",
          error: { message: `The model '${job.model}' is no longer served.`, type: "invalid_request_error", code: "model_not_found" },
        };
  abandoned.done();
  // Abandoned: its end is written and its slot given back already.
  if (run.signal.aborted || abandoned.signal.aborted) return;
  const drained = await events.drain().then(() => null, (err: unknown) => err);
  if (drained instanceof ReplyStreamClosedError) return;
  if (drained && outcome.status !== "failed") outcome = { status: "failed", error: describeFailure(drained) };
  if (outcome.status === "failed") deps.log.warn({ completionId: id, code: outcome.error.code }, "completion failed");
  const end = completionEnd(id, outcome, events.publishedReply, choices);
  await deps.replySlots.release(job.tenantId, id).catch((err: unknown) => deps.log.warn({ err }, "could not give back the reply slot"));
  await events.end([
    { event: outcome.status === "completed" ? "message.completed" : "message.failed", data: end },
    { event: "done", data: "[DONE]" },
  ]);
}
