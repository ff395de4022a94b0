import type { StoredError, StoredUsage } from "../db/schema.ts";
import { ProviderError, type ChatProvider, type ChatRequest } from "../providers/types.ts";
import { ReplyEventsUnavailableError } from "../streams/reply-event-writer.ts";
import { isEmptyDelta, type ReplyDelta } from "./reply-delta.ts";
import { StorableTextStream, storableText } from "./storable-text.ts";

export type ModelCallOutcome =
  | { status: "completed"; content: string; finishReason: string; usage: StoredUsage | null }
  | { status: "failed"; content: string; error: StoredError };

/** What went wrong, in the words stored on a reply: no stack, no upstream secrets. */
export function describeFailure(err: unknown): StoredError {
  if (err instanceof ProviderError && err.refused) {
    // The upstream refused the request as sent (context too long, a bad field): its own words, so a client
    // sees the status, type, code and param it would have seen calling the upstream directly.
    const said = err.upstreamDetail;
    return {
      message: err.message,
      type: said?.type ?? "upstream_error",
      code: said?.code ?? err.code,
      param: said?.param ?? null,
      status: err.status,
    };
  }
  if (err instanceof ProviderError) return { message: err.message, type: "upstream_error", code: err.code };
  if (err instanceof ReplyEventsUnavailableError) {
    return { message: "The reply's events could not be written: Redis was unreachable for too long.", type: "server_error", code: err.code };
  }
  if (err instanceof Error && err.name === "AbortError") {
    return { message: "The reply was interrupted before it finished.", type: "server_error", code: "interrupted" };
  }
  return { message: "The reply failed inside Parley.", type: "server_error", code: "internal_error" };
}

/**
 * Calls the provider, streaming (each delta handed to `onDelta` as it comes)
 * or not (the whole answer handed over as one delta), and says how it ended.
 * A delta carries text, reasoning, tool-call fragments and logprobs as the
 * upstream sent them; text and reasoning are made storable first (see
 * storable-text.ts), and `content` is the text `onDelta` took: a failure keeps
 * whatever content had been handed on. The caller puts the rest together
 * from what it handed on (the event writer's publishedReply).
 */
export async function callModel(opts: {
  provider: ChatProvider;
  request: ChatRequest;
  upstreamStream: boolean;
  signal: AbortSignal;
  onDelta: (delta: ReplyDelta) => Promise<void>;
}): Promise<ModelCallOutcome & { cause?: unknown }> {
  let content = "";
  const handOn = async (delta: ReplyDelta) => {
    if (isEmptyDelta(delta)) return;
    await opts.onDelta(delta);
    content += delta.content ?? "";
  };
  try {
    if (!opts.upstreamStream) {
      const result = await opts.provider.completeChat(opts.request, opts.signal);
      const choice = result.choices[0];
      await handOn({
        content: storableText(choice?.content ?? ""),
        reasoning: storableText(choice?.reasoning ?? ""),
        ...(choice?.toolCalls?.length
          ? { toolCalls: choice.toolCalls.map((c, index) => ({ index, id: c.id, type: c.type, function: { name: c.function.name, arguments: c.function.arguments } })) }
          : {}),
        ...(choice?.logprobs !== undefined && choice.logprobs !== null ? { logprobs: [choice.logprobs] } : {}),
      });
      return { status: "completed", content, finishReason: choice?.finishReason ?? "stop", usage: result.usage };
    }
    let finishReason = "stop";
    let usage: StoredUsage | null = null;
    const text = new StorableTextStream();
    const reasoning = new StorableTextStream();
    for await (const chunk of opts.provider.streamChat(opts.request, opts.signal)) {
      // Only the first choice is a conversation's reply (n > 1 is refused before the call).
      if ((chunk.choice ?? 0) !== 0) continue;
      if (chunk.type === "finish") {
        finishReason = chunk.finishReason;
        usage = chunk.usage;
        continue;
      }
      await handOn({
        ...(chunk.content ? { content: text.push(chunk.content) } : {}),
        ...(chunk.reasoning ? { reasoning: reasoning.push(chunk.reasoning) } : {}),
        ...(chunk.toolCalls?.length ? { toolCalls: chunk.toolCalls } : {}),
        ...(chunk.logprobs !== undefined && chunk.logprobs !== null ? { logprobs: [chunk.logprobs] } : {}),
      });
    }
    await handOn({ content: text.end(), reasoning: reasoning.end() });
    return { status: "completed", content, finishReason, usage };
  } catch (cause) {
    return { status: "failed", content, error: describeFailure(cause), cause };
  }
}
