import type { ChoiceOut, ChunkDelta, CompletionUsage } from "./wire.ts";

/**
 * Reading a reply's events (a conversation reply's, or a stateless
 * completion's) into what the chat-completions format says: the deltas of a
 * `message.delta` event as a chunk's `delta`, and the end event as choices.
 */

interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** One choice of a stateless completion's end (the end's own fields are choice 0's). */
interface EndChoice {
  index: number;
  content: string;
  reasoning?: string | null;
  tool_calls?: ToolCallOut[] | null;
  logprobs?: unknown;
  finish_reason: string | null;
}

/** What every end event carries: a reply's message resource, or a stateless completion's end. */
export interface ReplyEndChoices {
  content: string;
  finish_reason: string | null;
  usage: CompletionUsage | null;
  reasoning?: string | null;
  tool_calls?: ToolCallOut[] | null;
  logprobs?: unknown;
  /** A stateless completion's choices, when it asked for more than one. */
  choices?: EndChoice[];
}

/** The choices of an end, in index order. */
export function choicesOf(end: ReplyEndChoices): ChoiceOut[] {
  const given: EndChoice[] = end.choices?.length
    ? end.choices
    : [{ index: 0, content: end.content, reasoning: end.reasoning ?? null, tool_calls: end.tool_calls ?? null, logprobs: end.logprobs, finish_reason: end.finish_reason }];
  return [...given]
    .sort((a, b) => a.index - b.index)
    .map((c) => ({
      index: c.index,
      content: c.content,
      reasoning: c.reasoning || null,
      toolCalls: c.tool_calls?.length ? c.tool_calls : null,
      logprobs: c.logprobs ?? null,
      finishReason: c.finish_reason,
    }));
}

/** A `message.delta` event's data. */
export interface DeltaEventData {
  choice?: number;
  delta: { content?: string; reasoning?: string; tool_calls?: unknown[]; logprobs?: unknown[] };
}

const isOpenAiLogprobs = (l: unknown): l is { content?: unknown[] | null; refusal?: unknown[] | null } =>
  typeof l === "object" && l !== null && !Array.isArray(l) && Object.keys(l).every((k) => k === "content" || k === "refusal");

/**
 * A chunk's `logprobs` from the list an event carries (one per upstream chunk;
 * several when a Redis outage joined deltas): the one as it came, or
 * OpenAI-shaped ones joined into one.
 */
export function chunkLogprobs(list: unknown[] | undefined): unknown {
  if (!list?.length) return null;
  if (list.length === 1) return list[0];
  if (!list.every(isOpenAiLogprobs)) return list;
  const joined: { content: unknown[] | null; refusal?: unknown[] | null } = { content: null };
  for (const l of list) {
    if (Array.isArray(l.content)) joined.content = [...(joined.content ?? []), ...l.content];
    if (Array.isArray(l.refusal)) joined.refusal = [...(joined.refusal ?? []), ...l.refusal];
  }
  return joined;
}

/** The chunk `delta` an event's delta becomes: reasoning as `reasoning_content`, tool-call fragments as they came. */
export function chunkDelta(delta: DeltaEventData["delta"]): ChunkDelta {
  return {
    ...(delta.content ? { content: delta.content } : {}),
    ...(delta.reasoning ? { reasoning_content: delta.reasoning } : {}),
    ...(delta.tool_calls?.length ? { tool_calls: delta.tool_calls } : {}),
  };
}
