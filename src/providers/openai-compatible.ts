import OpenAI from "openai";
import type { UpstreamConfig } from "../config.ts";
import {
  ProviderError,
  type ChatChunk,
  type ChatProvider,
  type ChatRequest,
  type ChatResult,
  type FinishReason,
  type TokenUsage,
} from "./types.ts";

const FINISH_REASONS: ReadonlySet<string> = new Set(["stop", "length", "content_filter", "tool_calls"]);
const toFinishReason = (r: string | null | undefined): FinishReason =>
  r && FINISH_REASONS.has(r) ? (r as FinishReason) : "stop";

function toUsage(u: OpenAI.CompletionUsage | null | undefined): TokenUsage | null {
  if (!u) return null;
  const prompt = u.prompt_tokens ?? 0;
  const completion = u.completion_tokens ?? 0;
  // Some servers leave out total_tokens; it is the sum wherever it is sent.
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: u.total_tokens ?? prompt + completion };
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Our own fields never reach the upstream from `params`; everything else passes through untouched. */
function upstreamBody(request: ChatRequest): Record<string, unknown> {
  const { stream: _s, model: _m, messages: _msgs, ...sampling } = request.params;
  return { ...sampling, model: request.model, messages: request.messages };
}

/** Retry-After as milliseconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | null {
  if (!value) return null;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function abortError(cause: unknown): Error {
  const err = new Error("The request was aborted.", { cause });
  err.name = "AbortError";
  return err;
}

/**
 * An upstream that speaks the chat-completions API (hosted APIs, vLLM, Ollama,
 * llama.cpp server), called through the official SDK. Retries are not the
 * SDK's to make (maxRetries 0): a failure is reported as a ProviderError.
 *
 * The SDK's `timeout` covers the wait for the response headers only; once the
 * stream has begun, a stalled upstream is ended by the caller's signal.
 */
export function createOpenAICompatibleProvider(upstream: UpstreamConfig): ChatProvider {
  const client = new OpenAI({
    baseURL: upstream.base_url,
    // The SDK insists on a key; local upstreams often take none.
    apiKey: upstream.api_key || "unused",
    timeout: upstream.timeout_ms,
    maxRetries: 0,
  });
  const name = `upstream:${upstream.name}`;

  /** What the upstream said, short, and with our key masked should it echo it back. */
  function upstreamSaid(err: InstanceType<typeof OpenAI.APIError>): string {
    const body = err.error as unknown;
    let said: string;
    if (isPlainObject(body) && typeof body.message === "string") said = body.message;
    else if (typeof body === "string") said = body;
    else if (err.message.startsWith(`${err.status} `)) said = err.message.slice(`${err.status} `.length); // a non-JSON body
    else said = err.message;
    if (said === "status code (no body)") said = "";
    said = said.trim().slice(0, 300);
    if (upstream.api_key) said = said.replaceAll(upstream.api_key, "[api key]");
    return said ? `: ${said}` : "";
  }

  function toProviderError(err: unknown, signal: AbortSignal, afterDeltas: boolean): Error {
    if (err instanceof OpenAI.APIUserAbortError || signal.aborted) return abortError(err);
    if (err instanceof Error && err.name === "AbortError") return err;
    if (err instanceof OpenAI.APIConnectionTimeoutError) {
      return new ProviderError(`upstream ${upstream.name} did not answer within ${upstream.timeout_ms} ms`, {
        code: "upstream_timeout",
        status: 504,
        cause: err,
      });
    }
    // APIConnectionError is an APIError without a status; any other statusless
    // APIError is an `error` event the upstream sent inside its stream.
    if (err instanceof OpenAI.APIError && !(err instanceof OpenAI.APIConnectionError)) {
      const status = typeof err.status === "number" ? err.status : null;
      const what = status === null ? "reported an error mid-stream" : `answered ${status}`;
      return new ProviderError(`upstream ${upstream.name} ${what}${upstreamSaid(err)}`, {
        code: "upstream_error",
        upstreamStatus: status,
        retryAfterMs: parseRetryAfter(err.headers?.get("retry-after")),
        cause: err,
      });
    }
    if (err instanceof SyntaxError) {
      return new ProviderError(`upstream ${upstream.name} sent a reply that is not valid JSON`, {
        code: "upstream_error",
        cause: err,
      });
    }
    // Refused, reset, or cut mid-stream (fetch reports a cut body as a TypeError "terminated").
    return new ProviderError(
      afterDeltas
        ? `upstream ${upstream.name} dropped the connection mid-reply`
        : `upstream ${upstream.name} could not be reached or closed the connection before replying`,
      { code: afterDeltas ? "upstream_disconnected" : "upstream_unreachable", cause: err },
    );
  }

  return {
    name,
    async *streamChat(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
      const body = upstreamBody(request);
      const streamOptions = { ...(isPlainObject(body.stream_options) ? body.stream_options : {}), include_usage: true };
      let sawDelta = false;
      let finishReason: string | null = null;
      let usage: TokenUsage | null = null;
      try {
        const stream = await client.chat.completions.create(
          { ...body, stream: true, stream_options: streamOptions } as unknown as OpenAI.ChatCompletionCreateParamsStreaming,
          { signal },
        );
        for await (const chunk of stream) {
          if (chunk.usage) usage = toUsage(chunk.usage);
          const choice = chunk.choices?.[0];
          if (!choice) continue;
          if (choice.finish_reason) finishReason = choice.finish_reason;
          const content = choice.delta?.content;
          if (content) {
            sawDelta = true;
            yield { type: "delta", content };
          }
        }
      } catch (err) {
        throw toProviderError(err, signal, sawDelta);
      }
      // The SDK ends its iterator quietly when the signal aborts mid-stream: that is no finished reply.
      if (signal.aborted) throw abortError(signal.reason);
      yield { type: "finish", finishReason: toFinishReason(finishReason), usage };
    },

    async completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
      const { stream_options: _so, ...body } = upstreamBody(request);
      try {
        const completion = await client.chat.completions.create(
          { ...body, stream: false } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
          { signal },
        );
        const choice = completion.choices?.[0];
        return {
          content: choice?.message?.content ?? "",
          finishReason: toFinishReason(choice?.finish_reason),
          usage: toUsage(completion.usage),
        };
      } catch (err) {
        throw toProviderError(err, signal, false);
      }
    },
  };
}
