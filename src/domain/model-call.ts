import type { StoredError, StoredUsage } from "../db/schema.ts";
import { ProviderError, type ChatProvider, type ChatRequest } from "../providers/types.ts";
import { ReplyEventsUnavailableError } from "../streams/reply-event-writer.ts";
import { StorableTextStream, storableText } from "./storable-text.ts";

export type ModelCallOutcome =
  | { status: "completed"; content: string; finishReason: string; usage: StoredUsage | null }
  | { status: "failed"; content: string; error: StoredError };

/** What went wrong, in the words stored on a reply: no stack, no upstream secrets. */
export function describeFailure(err: unknown): StoredError {
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
 * Every delta is made storable first (see storable-text.ts), and `content` is
 * what `onDelta` took: a failure keeps whatever content had been handed on.
 */
export async function callModel(opts: {
  provider: ChatProvider;
  request: ChatRequest;
  upstreamStream: boolean;
  signal: AbortSignal;
  onDelta: (content: string) => Promise<void>;
}): Promise<ModelCallOutcome & { cause?: unknown }> {
  let content = "";
  const handOn = async (delta: string) => {
    if (!delta) return;
    await opts.onDelta(delta);
    content += delta;
  };
  try {
    if (!opts.upstreamStream) {
      const result = await opts.provider.completeChat(opts.request, opts.signal);
      await handOn(storableText(result.content));
      return { status: "completed", content, finishReason: result.finishReason, usage: result.usage };
    }
    let finishReason = "stop";
    let usage: StoredUsage | null = null;
    const text = new StorableTextStream();
    for await (const chunk of opts.provider.streamChat(opts.request, opts.signal)) {
      if (chunk.type === "finish") {
        finishReason = chunk.finishReason;
        usage = chunk.usage;
      } else if (chunk.content) {
        await handOn(text.push(chunk.content));
      }
    }
    await handOn(text.end());
    return { status: "completed", content, finishReason, usage };
  } catch (cause) {
    return { status: "failed", content, error: describeFailure(cause), cause };
  }
}
