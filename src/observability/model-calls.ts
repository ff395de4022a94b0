import type { ChatChunk, ChatProvider, ChatRequest, TokenUsage } from "../providers/types.ts";
import type { ModelCallMetrics } from "./metrics.ts";

/** A chunk that carries something a client sees: the first one is the first token. */
const isToken = (c: ChatChunk): boolean =>
  c.type === "delta" && (c.content !== undefined || c.reasoning !== undefined || c.toolCalls !== undefined);

/**
 * Wraps a provider (outside its retries, so time to first token includes them and their backoff) with the
 * model-call metrics: TTFT, call duration by outcome, and the tokens of the usage it reported, by the model
 * name the provider is asked for. What a caller stores as a reply's usage is the same usage, so the token
 * counters add up to the stored usage. Per chunk it does one comparison; the series are bound per model.
 */
export function instrumentProvider(provider: ChatProvider, metrics: ModelCallMetrics): ChatProvider {
  const countUsage = (series: ReturnType<ModelCallMetrics["forModel"]>, usage: TokenUsage | null) => {
    if (usage) series.tokens(usage.prompt_tokens, usage.completion_tokens);
  };
  return {
    name: provider.name,

    async *streamChat(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
      const series = metrics.forModel(request.model);
      const started = performance.now();
      let first = true;
      let usage: TokenUsage | null = null;
      let outcome: "completed" | "failed" = "failed";
      try {
        for await (const chunk of provider.streamChat(request, signal)) {
          if (first && isToken(chunk)) {
            first = false;
            series.ttft((performance.now() - started) / 1000);
          }
          // A call's usage is the whole call's, whichever choice's finish carries it.
          if (chunk.type === "finish" && chunk.usage) usage = chunk.usage;
          yield chunk;
        }
        outcome = "completed";
      } finally {
        series.ended(outcome, (performance.now() - started) / 1000);
        countUsage(series, usage);
      }
    },

    async completeChat(request: ChatRequest, signal: AbortSignal) {
      const series = metrics.forModel(request.model);
      const started = performance.now();
      let outcome: "completed" | "failed" = "failed";
      try {
        const result = await provider.completeChat(request, signal);
        outcome = "completed";
        // Not streamed: the whole answer is its first token.
        series.ttft((performance.now() - started) / 1000);
        countUsage(series, result.usage);
        return result;
      } finally {
        series.ended(outcome, (performance.now() - started) / 1000);
      }
    },
  };
}
