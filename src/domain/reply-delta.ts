import { streamIdMs } from "../streams/reply-events.ts";
import type { ToolCall, ToolCallDelta } from "./chat-message.ts";

/**
 * What a reply streams, one piece at a time: text, reasoning, fragments of
 * tool calls (by index, as OpenAI streams them) and logprobs. A native
 * `message.delta` event carries one, as `{ content?, reasoning?, tool_calls?, logprobs? }`.
 */
export interface ReplyDelta {
  content?: string;
  reasoning?: string;
  toolCalls?: ToolCallDelta[];
  /** The upstream choice's `logprobs` for this chunk, as it sent them. */
  logprobs?: unknown[];
  /**
   * Which choice this is (absent: 0). Only a stateless completion asks for several; its event says
   * `choice`, and deltas of different choices are never joined (the caller drains between them).
   */
  choice?: number;
}

export const isEmptyDelta = (d: ReplyDelta): boolean =>
  !d.content && !d.reasoning && !(d.toolCalls?.length) && !(d.logprobs?.length);

/** `b` after `a`, as one delta: texts concatenated, tool-call fragments and logprobs in order. */
export function joinDeltas(a: ReplyDelta, b: ReplyDelta): ReplyDelta {
  const joined: ReplyDelta = b.choice ? { choice: b.choice } : {};
  const content = (a.content ?? "") + (b.content ?? "");
  if (content) joined.content = content;
  const reasoning = (a.reasoning ?? "") + (b.reasoning ?? "");
  if (reasoning) joined.reasoning = reasoning;
  const toolCalls = [...(a.toolCalls ?? []), ...(b.toolCalls ?? [])];
  if (toolCalls.length) joined.toolCalls = toolCalls;
  const logprobs = [...(a.logprobs ?? []), ...(b.logprobs ?? [])];
  if (logprobs.length) joined.logprobs = logprobs;
  return joined;
}

/** The `delta` of a native `message.delta` event. */
export function deltaEventData(d: ReplyDelta): Record<string, unknown> {
  return {
    ...(d.content ? { content: d.content } : {}),
    ...(d.reasoning ? { reasoning: d.reasoning } : {}),
    ...(d.toolCalls?.length ? { tool_calls: d.toolCalls } : {}),
    ...(d.logprobs?.length ? { logprobs: d.logprobs } : {}),
  };
}

/**
 * Everything a reply has streamed so far, put together: content and reasoning
 * concatenated, each tool call built from its fragments (id, type and name as
 * they come, argument fragments concatenated), logprobs in order.
 */
export class StreamedReply {
  content = "";
  reasoning = "";
  /** When its first token (text, reasoning or a tool call) was written, in epoch ms; null while none was. */
  firstTokenMs: number | null = null;
  readonly #calls = new Map<number, { id: string; type: "function"; name: string; arguments: string }>();
  readonly #logprobs: unknown[] = [];

  /** `atMs`: when the delta was written to the reply's events (its stream id's ms); now when not said. */
  add(d: ReplyDelta, atMs = Date.now()): void {
    if (this.firstTokenMs === null && (d.content || d.reasoning || d.toolCalls?.length)) this.firstTokenMs = atMs;
    if (d.content) this.content += d.content;
    if (d.reasoning) this.reasoning += d.reasoning;
    for (const fragment of d.toolCalls ?? []) {
      const call = this.#calls.get(fragment.index) ?? { id: "", type: "function" as const, name: "", arguments: "" };
      if (fragment.id) call.id = fragment.id;
      // Names come whole in one chunk from OpenAI; some servers split them, so fragments are joined like arguments.
      if (fragment.function?.name) call.name += fragment.function.name;
      if (fragment.function?.arguments) call.arguments += fragment.function.arguments;
      this.#calls.set(fragment.index, call);
    }
    this.#logprobs.push(...(d.logprobs ?? []));
  }

  /** The tool calls in index order, or null when none were streamed. */
  get toolCalls(): ToolCall[] | null {
    if (this.#calls.size === 0) return null;
    return [...this.#calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, c]) => ({ id: c.id, type: c.type, function: { name: c.name, arguments: c.arguments } }));
  }

  /**
   * The logprobs as stored: OpenAI's chunks each carry `{ content: [...] }`
   * (and `refusal`), joined into one such object as a whole reply has it;
   * anything else (Together's per-token arrays) is kept as the list it came in.
   */
  get logprobs(): unknown {
    if (this.#logprobs.length === 0) return null;
    const openAiShaped = this.#logprobs.every(
      (l) => typeof l === "object" && l !== null && !Array.isArray(l) && Object.keys(l).every((k) => k === "content" || k === "refusal"),
    );
    if (!openAiShaped) return [...this.#logprobs];
    const joined: { content: unknown[] | null; refusal?: unknown[] | null } = { content: null };
    for (const l of this.#logprobs as { content?: unknown[] | null; refusal?: unknown[] | null }[]) {
      if (Array.isArray(l.content)) joined.content = [...(joined.content ?? []), ...l.content];
      if (Array.isArray(l.refusal)) joined.refusal = [...(joined.refusal ?? []), ...l.refusal];
    }
    return joined;
  }

  /** The whole of it as one delta (a stream that starts over sends it first). */
  asDelta(): ReplyDelta {
    const calls = [...this.#calls.entries()].sort(([a], [b]) => a - b);
    return {
      ...(this.content ? { content: this.content } : {}),
      ...(this.reasoning ? { reasoning: this.reasoning } : {}),
      ...(calls.length
        ? { toolCalls: calls.map(([index, c]) => ({ index, id: c.id, type: c.type, function: { name: c.name, arguments: c.arguments } })) }
        : {}),
      ...(this.#logprobs.length ? { logprobs: [...this.#logprobs] } : {}),
    };
  }
}

/** The delta a `message.delta` event's JSON carries (what deltaEventData wrote); empty when it is not one. */
export function deltaFromEventData(data: string): ReplyDelta {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return {};
  }
  const d = (parsed as { delta?: Record<string, unknown> } | null)?.delta;
  if (!d || typeof d !== "object") return {};
  return {
    ...(typeof d.content === "string" ? { content: d.content } : {}),
    ...(typeof d.reasoning === "string" ? { reasoning: d.reasoning } : {}),
    ...(Array.isArray(d.tool_calls) ? { toolCalls: d.tool_calls as ToolCallDelta[] } : {}),
    ...(Array.isArray(d.logprobs) ? { logprobs: d.logprobs as unknown[] } : {}),
  };
}

/** A reply's stream read back: the deltas since it (last) started; a `message.reset` drops what came before it. */
export function streamedReplyOf(events: { id: string; event: string; data: string }[]): StreamedReply {
  let streamed = new StreamedReply();
  for (const e of events) {
    if (e.event === "message.reset") streamed = new StreamedReply();
    else if (e.event === "message.delta") streamed.add(deltaFromEventData(e.data), streamIdMs(e.id));
  }
  return streamed;
}

/** A stored reply as one delta: what a follower that reads it from Postgres is sent before its end. */
export function storedReplyDelta(row: { content: string; reasoning: string | null; toolCalls: ToolCall[] | null }): ReplyDelta {
  return {
    ...(row.content ? { content: row.content } : {}),
    ...(row.reasoning ? { reasoning: row.reasoning } : {}),
    ...(row.toolCalls?.length
      ? { toolCalls: row.toolCalls.map((c, index) => ({ index, id: c.id, type: c.type, function: { name: c.function.name, arguments: c.function.arguments } })) }
      : {}),
  };
}
