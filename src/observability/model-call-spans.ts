import { SpanKind, trace } from "@opentelemetry/api";
import { inSpan, markFailed, tracingOn } from "./spans.ts";

/** A model call as the GenAI semantic conventions describe it. */
export interface ModelCallDescription {
  /** Parley's provider name ("simulator", "upstream:<name>"). */
  provider: string;
  /** The model as the upstream is asked for it. */
  model: string;
  conversationId?: string;
}

/** The parts of a model call's outcome a span reports (structurally ModelCallOutcome's). */
interface TracedOutcome {
  status: string;
  finishReason?: string;
  /** By choice, when the call asked for several (a stateless chat completion with `n`). */
  finishReasons?: ReadonlyMap<number, string>;
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  error?: { code?: string | null };
}

/**
 * `call` in a `chat {model}` client span with the GenAI attributes: request, usage and finish reason when
 * it completes, error.type when it fails (the outcome says so; it does not throw). Retries inside it are
 * events (noteRetry), and the upstream HTTP request carries its traceparent (upstream-fetch.ts).
 */
export function modelCallSpan<T extends TracedOutcome>(what: ModelCallDescription, call: () => Promise<T>): Promise<T> {
  if (!tracingOn()) return call();
  const attributes = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": what.provider,
    "gen_ai.system": what.provider,
    "gen_ai.request.model": what.model,
    ...(what.conversationId ? { "gen_ai.conversation.id": what.conversationId } : {}),
  };
  return inSpan(`chat ${what.model}`, SpanKind.CLIENT, attributes, async (span) => {
    const outcome = await call();
    if (!span) return outcome;
    const reasons = outcome.finishReasons
      ? [...outcome.finishReasons.entries()].sort(([a], [b]) => a - b).map(([, reason]) => reason)
      : outcome.finishReason !== undefined
        ? [outcome.finishReason]
        : [];
    if (reasons.length > 0) span.setAttribute("gen_ai.response.finish_reasons", reasons);
    if (outcome.usage) {
      span.setAttribute("gen_ai.usage.input_tokens", outcome.usage.prompt_tokens);
      span.setAttribute("gen_ai.usage.output_tokens", outcome.usage.completion_tokens);
    }
    if (outcome.status === "failed") markFailed(span, outcome.error?.code ?? "_OTHER");
    return outcome;
  });
}

/** A retry of a model call, as an event on its span: which attempt failed, how, and the wait before the next. */
export function noteRetry(attempt: number, errorType: string, delayMs: number): void {
  if (!tracingOn()) return;
  trace.getActiveSpan()?.addEvent("gen_ai.retry", { "parley.retry.attempt": attempt + 1, "error.type": errorType, "parley.retry.delay_ms": delayMs });
}
