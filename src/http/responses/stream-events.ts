import type { MessageRow } from "../../db/schema.ts";
import type { ToolCall } from "../../domain/chat-message.ts";
import { deltaFromEventData, storedReplyDelta, type ReplyDelta } from "../../domain/reply-delta.ts";
import { toMessageResource } from "../../domain/resources.ts";
import { streamIdMs, type ReplyEvent } from "../../streams/reply-events.ts";
import {
  functionCallItemId,
  itemStatusOf,
  LOGPROBS_INCLUDE,
  messageToItems,
  reasoningItemId,
  responsesLogprobs,
  withReasoningSummary,
  type Item,
  type ItemStatus,
  type Logprob,
} from "./items.ts";
import {
  asksReasoningSummary,
  replyMessageId,
  responseOutput,
  responseStatusOf,
  toResponseObject,
  type ChatUsage,
  type ResponseBase,
  type ResponseObject,
  type ResponseOutcome,
  type ResponseStatus,
} from "./response-object.ts";

/**
 * A reply's native event log, told as the Responses API streams it. The
 * translation is a pure function of the log: the same events give the same
 * Responses events with the same sequence numbers, on any API instance and at
 * any time, which is what makes `starting_after=N` exact (the route replays
 * the log from its start and skips what the client has).
 */

interface StreamEventBase {
  sequence_number: number;
}
type Lifecycle = "response.created" | "response.queued" | "response.in_progress" | "response.completed" | "response.failed" | "response.incomplete";
type OutputText = { type: "output_text"; text: string; annotations: never[]; logprobs?: Logprob[] };
type ReasoningText = { type: "reasoning_text"; text: string };
type SummaryText = { type: "summary_text"; text: string };
export type ResponseStreamEvent = StreamEventBase &
  (
    | { type: Lifecycle; response: ResponseObject }
    | { type: "response.output_item.added" | "response.output_item.done"; output_index: number; item: Item }
    | {
        type: "response.content_part.added" | "response.content_part.done";
        item_id: string;
        output_index: number;
        content_index: number;
        part: OutputText | ReasoningText;
      }
    | { type: "response.output_text.delta"; item_id: string; output_index: number; content_index: number; delta: string; logprobs: Logprob[] }
    | { type: "response.output_text.done"; item_id: string; output_index: number; content_index: number; text: string; logprobs: Logprob[] }
    | { type: "response.reasoning_text.delta"; item_id: string; output_index: number; content_index: number; delta: string }
    | { type: "response.reasoning_text.done"; item_id: string; output_index: number; content_index: number; text: string }
    | { type: "response.reasoning_summary_part.added"; item_id: string; output_index: number; summary_index: number; part: SummaryText }
    | { type: "response.reasoning_summary_text.delta"; item_id: string; output_index: number; summary_index: number; delta: string }
    | { type: "response.reasoning_summary_text.done"; item_id: string; output_index: number; summary_index: number; text: string }
    | {
        type: "response.reasoning_summary_part.done";
        item_id: string;
        output_index: number;
        summary_index: number;
        part: SummaryText;
        /** As the OpenAI SDK reads it: only when the reasoning was cut short. */
        status?: "incomplete";
      }
    | { type: "response.function_call_arguments.delta"; item_id: string; output_index: number; delta: string }
    | { type: "response.function_call_arguments.done"; item_id: string; output_index: number; name: string; arguments: string }
    | {
        type: "error";
        // The OpenAI SDK reads these flat, the Open Responses schema nests them under `error`: both are sent.
        code: string;
        message: string;
        param: null;
        error: { type: string; code: string; message: string; param: null };
      }
  );
type NewEvent = ResponseStreamEvent extends infer E ? (E extends unknown ? Omit<E, "sequence_number"> : never) : never;

/** Which part of the reply an output item shows. */
type PartKey = "reasoning" | "content" | `call:${number}`;

interface OpenItem {
  key: PartKey;
  id: string;
  outputIndex: number;
  /** What the client has been sent of it: text, reasoning or arguments. */
  sent: string;
  /** A function call's id and name, as sent when it was added. */
  callId?: string;
  name?: string;
  logprobs: Logprob[];
  closed: boolean;
}

/** A reply's end event's data: a message resource (a turn's reply) or a stateless completion's end. */
interface EndData {
  id: string;
  status: "completed" | "failed" | "cancelled";
  content: string;
  reasoning?: string | null;
  tool_calls?: ToolCall[] | null;
  logprobs?: unknown;
  finish_reason: string | null;
  usage: ChatUsage | null;
  error: { code: string; message: string } | null;
  completed_at?: number | null;
}

/** The reply as the items are made from it, part by part. */
interface ReplyParts {
  reasoning: string;
  content: string;
  calls: Map<number, { id: string; name: string; arguments: string }>;
}

const emptyParts = (): ReplyParts => ({ reasoning: "", content: "", calls: new Map() });

function addDelta(parts: ReplyParts, d: ReplyDelta): void {
  if (d.reasoning) parts.reasoning += d.reasoning;
  if (d.content) parts.content += d.content;
  for (const f of d.toolCalls ?? []) {
    const call = parts.calls.get(f.index) ?? { id: "", name: "", arguments: "" };
    if (f.id) call.id = f.id;
    if (f.function?.name) call.name += f.function.name;
    if (f.function?.arguments) call.arguments += f.function.arguments;
    parts.calls.set(f.index, call);
  }
}

const unixSecondsOfStreamId = (id: string): number => Math.floor(streamIdMs(id) / 1000);

export class ResponseEventTranslator {
  readonly #base: ResponseBase;
  #replyId: string | null;
  #seq = 0;
  #started = false;
  #inProgress = false;
  #finished = false;
  /** A `message.reset` came after output was sent: the new run must repeat it before it may extend it. */
  #restarted = false;
  /** The current run's reply so far. */
  #run = emptyParts();
  readonly #items = new Map<PartKey, OpenItem>();
  #nextOutputIndex = 0;
  #open: OpenItem | null = null;
  /** The logprobs of the delta being translated, for its text (when the request included them). */
  #deltaLogprobs: Logprob[] = [];
  /**
   * The request asked for reasoning summaries: the reasoning item also streams
   * its text as its one summary part, delta for delta (see withReasoningSummary).
   */
  readonly #summarizes: boolean;

  constructor(base: ResponseBase, replyId: string | null) {
    this.#base = base;
    this.#replyId = replyId;
    this.#summarizes = asksReasoningSummary(base);
  }

  /** True once the response has ended (its completed, failed or incomplete event) or stopped with an error. */
  get finished(): boolean {
    return this.#finished;
  }

  push(e: ReplyEvent): ResponseStreamEvent[] {
    if (this.#finished) return [];
    const out: ResponseStreamEvent[] = [];
    const emit = (event: NewEvent) => out.push({ ...event, sequence_number: this.#seq++ } as ResponseStreamEvent);
    switch (e.event) {
      case "message.created": {
        const id = parseId(e.data);
        this.#replyId ??= id;
        if (id !== null && id === this.#replyId) this.#start(emit);
        break;
      }
      case "message.reset": {
        this.#start(emit);
        if (this.#items.size > 0) this.#restarted = true;
        this.#run = emptyParts();
        break;
      }
      case "message.delta": {
        if (choiceOf(e.data) !== 0) break;
        this.#start(emit);
        this.#markInProgress(emit);
        const delta = deltaFromEventData(e.data);
        this.#deltaLogprobs = this.#base.include.includes(LOGPROBS_INCLUDE) ? (delta.logprobs ?? []).flatMap(responsesLogprobs) : [];
        addDelta(this.#run, delta);
        this.#extend(this.#run, emit);
        this.#deltaLogprobs = [];
        break;
      }
      case "message.completed":
      case "message.failed":
      case "message.cancelled": {
        const end = parseEnd(e.data);
        if (!end) break;
        this.#start(emit);
        this.#markInProgress(emit);
        this.#end(end, e.id, emit);
        break;
      }
      case "done":
        break;
    }
    return out;
  }

  #snapshot(status: ResponseStatus): ResponseObject {
    return toResponseObject(this.#base, { status, output: [], usage: null, error: null, finishReason: null, completedAt: null });
  }

  #start(emit: (e: NewEvent) => void): void {
    if (this.#started) return;
    this.#started = true;
    if (this.#base.background) {
      emit({ type: "response.created", response: this.#snapshot("queued") });
      emit({ type: "response.queued", response: this.#snapshot("queued") });
    } else {
      emit({ type: "response.created", response: this.#snapshot("in_progress") });
      this.#markInProgress(emit);
    }
  }

  /** A background response is in progress once its reply has started; any other from the start. */
  #markInProgress(emit: (e: NewEvent) => void): void {
    if (this.#inProgress) return;
    this.#inProgress = true;
    emit({ type: "response.in_progress", response: this.#snapshot("in_progress") });
  }

  #messageId(): string {
    return replyMessageId(this.#replyId ?? "msg_");
  }

  /**
   * Sends what `parts` adds to what was sent, part by part (reasoning, text,
   * calls by index). Returns false when the reply no longer extends what was
   * sent (a restarted run that wrote something else): an `error` is sent and
   * the translation stops.
   */
  #extend(parts: ReplyParts, emit: (e: NewEvent) => void, final = false): boolean {
    const texts: [PartKey, string][] = [
      ["reasoning", parts.reasoning],
      ["content", parts.content],
      ...[...parts.calls.entries()].sort(([a], [b]) => a - b).map(([i, c]) => [`call:${i}`, c.arguments] as [PartKey, string]),
    ];
    for (const [key, text] of texts) {
      const item = this.#items.get(key);
      const sent = item?.sent ?? "";
      if (!text.startsWith(sent)) {
        // Still repeating what was sent (a restarted run catching up), or gone another way.
        if (!final && sent.startsWith(text)) continue;
        return this.#diverged(emit);
      }
      const call = key.startsWith("call:") ? parts.calls.get(Number(key.slice(5))) : undefined;
      if (item && call) {
        // A call's id and name were sent whole when it was added; a name still arriving in fragments may be shorter.
        const sentName = item.name ?? "";
        const idChanged = call.id !== "" && call.id !== item.callId;
        const nameChanged = final ? call.name !== sentName : !sentName.startsWith(call.name);
        if (idChanged || nameChanged) return this.#diverged(emit);
      }
      const extension = text.slice(sent.length);
      if (!item) {
        // A call is shown once its id and name are known (they are the item's identity); its arguments then follow.
        if (call && (!call.id || !call.name) && !final) continue;
        if (!call && !extension) continue;
        this.#add(key, call, emit);
      } else if (item.closed) {
        // A closed item cannot grow: a restarted run that goes on past it went another way.
        if (extension && this.#restarted) return this.#diverged(emit);
        continue;
      }
      if (extension) this.#send(this.#items.get(key)!, extension, emit);
    }
    return true;
  }

  #diverged(emit: (e: NewEvent) => void): false {
    const message =
      "The worker generating this response was lost after it had started, and the new run wrote something else; retrieve the response for its final output.";
    emit({
      type: "error",
      code: "reply_restarted",
      message,
      param: null,
      error: { type: "server_error", code: "reply_restarted", message, param: null },
    });
    this.#finished = true;
    return false;
  }

  #add(key: PartKey, call: { id: string; name: string } | undefined, emit: (e: NewEvent) => void): void {
    if (this.#open) this.#close(this.#open, "completed", emit);
    const messageId = this.#messageId();
    const index = key.startsWith("call:") ? Number(key.slice(5)) : 0;
    const id = key === "reasoning" ? reasoningItemId(messageId) : key === "content" ? messageId : functionCallItemId(messageId, index);
    const item: OpenItem = { key, id, outputIndex: this.#nextOutputIndex++, sent: "", logprobs: [], closed: false };
    this.#items.set(key, item);
    this.#open = item;
    const output_index = item.outputIndex;
    if (key === "reasoning") {
      emit({ type: "response.output_item.added", output_index, item: { id, type: "reasoning", summary: [], content: [] } });
      emit({ type: "response.content_part.added", item_id: id, output_index, content_index: 0, part: { type: "reasoning_text", text: "" } });
      if (this.#summarizes) {
        emit({ type: "response.reasoning_summary_part.added", item_id: id, output_index, summary_index: 0, part: { type: "summary_text", text: "" } });
      }
    } else if (key === "content") {
      emit({ type: "response.output_item.added", output_index, item: { id, type: "message", status: "in_progress", role: "assistant", content: [] } });
      emit({
        type: "response.content_part.added",
        item_id: id,
        output_index,
        content_index: 0,
        part: { type: "output_text", text: "", annotations: [] },
      });
    } else {
      item.callId = call?.id ?? "";
      item.name = call?.name ?? "";
      emit({
        type: "response.output_item.added",
        output_index,
        item: { id, type: "function_call", call_id: item.callId, name: item.name, arguments: "", status: "in_progress" },
      });
    }
  }

  #send(item: OpenItem, delta: string, emit: (e: NewEvent) => void): void {
    item.sent += delta;
    const at = { item_id: item.id, output_index: item.outputIndex };
    if (item.key === "reasoning") {
      emit({ type: "response.reasoning_text.delta", ...at, content_index: 0, delta });
      if (this.#summarizes) emit({ type: "response.reasoning_summary_text.delta", ...at, summary_index: 0, delta });
    } else if (item.key === "content") {
      const logprobs = this.#deltaLogprobs;
      this.#deltaLogprobs = [];
      item.logprobs.push(...logprobs);
      emit({ type: "response.output_text.delta", ...at, content_index: 0, delta, logprobs });
    } else emit({ type: "response.function_call_arguments.delta", ...at, delta });
  }

  #close(item: OpenItem, status: ItemStatus, emit: (e: NewEvent) => void, final?: Item): void {
    if (item.closed) return;
    item.closed = true;
    if (this.#open === item) this.#open = null;
    const at = { item_id: item.id, output_index: item.outputIndex };
    if (item.key === "reasoning") {
      emit({ type: "response.reasoning_text.done", ...at, content_index: 0, text: item.sent });
      emit({ type: "response.content_part.done", ...at, content_index: 0, part: { type: "reasoning_text", text: item.sent } });
      if (this.#summarizes) {
        emit({ type: "response.reasoning_summary_text.done", ...at, summary_index: 0, text: item.sent });
        emit({
          type: "response.reasoning_summary_part.done",
          ...at,
          summary_index: 0,
          part: { type: "summary_text", text: item.sent },
          ...(status === "completed" ? {} : { status: "incomplete" as const }),
        });
      }
      const done: Item = { id: item.id, type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: item.sent }] };
      emit({ type: "response.output_item.done", output_index: item.outputIndex, item: this.#summarizes ? withReasoningSummary(done) : done });
    } else if (item.key === "content") {
      const finalText = final?.type === "message" ? final.content.find((p) => p.type === "output_text") : undefined;
      const logprobs = finalText && "logprobs" in finalText && finalText.logprobs ? finalText.logprobs : item.logprobs;
      const withLogprobs = this.#base.include.includes(LOGPROBS_INCLUDE);
      const part: OutputText = { type: "output_text", text: item.sent, annotations: [], ...(withLogprobs ? { logprobs } : {}) };
      emit({ type: "response.output_text.done", ...at, content_index: 0, text: item.sent, logprobs: withLogprobs ? logprobs : [] });
      emit({ type: "response.content_part.done", ...at, content_index: 0, part });
      emit({
        type: "response.output_item.done",
        output_index: item.outputIndex,
        item: { id: item.id, type: "message", status, role: "assistant", content: [part] },
      });
    } else {
      const name = item.name ?? "";
      emit({ type: "response.function_call_arguments.done", ...at, name, arguments: item.sent });
      emit({
        type: "response.output_item.done",
        output_index: item.outputIndex,
        item: { id: item.id, type: "function_call", call_id: item.callId ?? "", name, arguments: item.sent, status },
      });
    }
  }

  #end(end: EndData, eventId: string, emit: (e: NewEvent) => void): void {
    const row = {
      id: this.#messageId(),
      role: "assistant" as const,
      content: end.content,
      parts: null,
      toolCalls: end.tool_calls ?? null,
      toolCallId: null,
      reasoning: end.reasoning ?? null,
      logprobs: end.logprobs ?? null,
      status: end.status,
      finishReason: end.finish_reason,
    };
    // The end is the reply as stored: whatever of it the deltas did not bring (a follower that read the row) is sent now.
    const final = emptyParts();
    final.reasoning = row.reasoning ?? "";
    final.content = row.content;
    for (const [i, c] of (row.toolCalls ?? []).entries()) final.calls.set(i, { id: c.id, name: c.function.name, arguments: c.function.arguments });
    if (!this.#extend(final, emit, true)) return;

    const output = responseOutput(messageToItems(row, { include: this.#base.include }));
    const status = itemStatusOf(row);
    for (const item of [...this.#items.values()].sort((a, b) => a.outputIndex - b.outputIndex)) {
      this.#close(item, status, emit, output.find((o) => o.id === item.id));
    }
    const outcome: ResponseOutcome = {
      status: responseStatusOf(end.status, end.finish_reason),
      // In the order the stream showed them (the order they appeared), as the SDKs expect the final output.
      output: [...this.#items.values()]
        .sort((a, b) => a.outputIndex - b.outputIndex)
        .flatMap((i) => output.filter((o) => o.id === i.id)),
      usage: end.usage,
      error: end.error ? { code: end.error.code, message: end.error.message } : null,
      finishReason: end.finish_reason,
      completedAt: end.completed_at ?? unixSecondsOfStreamId(eventId),
    };
    // Items of the end no delta showed (none, unless the deltas were lost) come last.
    for (const o of output) if (!outcome.output.includes(o)) outcome.output.push(o);
    const response = toResponseObject(this.#base, outcome);
    const type = response.status === "completed" ? "response.completed" : response.status === "failed" ? "response.failed" : "response.incomplete";
    emit({ type, response });
    this.#finished = true;
  }
}

function parseJson(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

const parseId = (data: string): string | null => {
  const id = (parseJson(data) as { id?: unknown } | null)?.id;
  return typeof id === "string" ? id : null;
};

const choiceOf = (data: string): number => {
  const choice = (parseJson(data) as { choice?: unknown } | null)?.choice;
  return typeof choice === "number" ? choice : 0;
};

function parseEnd(data: string): EndData | null {
  const end = parseJson(data) as Partial<EndData> | null;
  if (!end || typeof end !== "object" || typeof end.status !== "string") return null;
  return {
    id: typeof end.id === "string" ? end.id : "",
    status: end.status,
    content: typeof end.content === "string" ? end.content : "",
    reasoning: end.reasoning ?? null,
    tool_calls: end.tool_calls ?? null,
    logprobs: end.logprobs ?? null,
    finish_reason: end.finish_reason ?? null,
    usage: end.usage ?? null,
    error: end.error ?? null,
    completed_at: typeof end.completed_at === "number" ? end.completed_at : null,
  };
}

/**
 * The stream of a reply whose event log has expired, made from its row: the
 * same kind of events a live one has, each item's text in one delta.
 */
export function responseEventsFromRow(base: ResponseBase, row: MessageRow): ResponseStreamEvent[] {
  const translator = new ResponseEventTranslator(base, row.id);
  const at = `${(row.completedAt ?? row.createdAt).getTime()}-0`;
  const events: ReplyEvent[] = [{ id: `${row.createdAt.getTime()}-0`, event: "message.created", data: JSON.stringify({ id: row.id }) }];
  const delta = storedReplyDelta({ content: row.content, reasoning: row.reasoning, toolCalls: row.toolCalls as ToolCall[] | null });
  if (Object.keys(delta).length) {
    events.push({ id: at, event: "message.delta", data: JSON.stringify({ delta: { content: delta.content, reasoning: delta.reasoning, tool_calls: delta.toolCalls } }) });
  }
  if (row.status === "completed" || row.status === "failed" || row.status === "cancelled") {
    events.push({ id: at, event: `message.${row.status}`, data: JSON.stringify(toMessageResource(row)) });
  }
  return events.flatMap((e) => translator.push(e));
}
