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
  return { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens };
}

/** Our own fields never reach the upstream from `params`; everything else passes through untouched. */
function upstreamBody(request: ChatRequest): Record<string, unknown> {
  const { stream: _s, model: _m, messages: _msgs, ...sampling } = request.params;
  return { ...sampling, model: request.model, messages: request.messages };
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

  function toProviderError(err: unknown, afterTokens: boolean): Error {
    if (err instanceof OpenAI.APIUserAbortError) return abortError(err);
    if (err instanceof Error && err.name === "AbortError") return err;
    if (err instanceof OpenAI.APIConnectionTimeoutError) {
      return new ProviderError(`upstream ${upstream.name} did not answer within ${upstream.timeout_ms} ms`, {
        code: "upstream_timeout",
        status: 504,
        cause: err,
      });
    }
    if (err instanceof OpenAI.APIError && typeof err.status === "number") {
      const detail = (err.error as { message?: unknown } | undefined)?.message;
      const said = typeof detail === "string" ? `: ${detail.slice(0, 300)}` : "";
      return new ProviderError(`upstream ${upstream.name} answered ${err.status}${said}`, {
        code: "upstream_error",
        upstreamStatus: err.status,
        cause: err,
      });
    }
    // Refused, reset, or cut mid-stream (fetch reports that as a TypeError "terminated").
    return new ProviderError(
      afterTokens
        ? `upstream ${upstream.name} dropped the connection mid-reply`
        : `upstream ${upstream.name} could not be reached`,
      { code: afterTokens ? "upstream_disconnected" : "upstream_unreachable", cause: err },
    );
  }

  return {
    name,
    async *streamChat(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
      const body = upstreamBody(request);
      const streamOptions = { ...(body.stream_options as object | undefined), include_usage: true };
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
        throw toProviderError(err, sawDelta);
      }
      yield { type: "finish", finishReason: toFinishReason(finishReason), usage };
    },

    async completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
      const { stream_options: _so, ...body } = upstreamBody(request);
      try {
        const completion = await client.chat.completions.create(
          { ...body, stream: false } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
          { signal },
        );
        const choice = completion.choices[0];
        return {
          content: choice?.message.content ?? "",
          finishReason: toFinishReason(choice?.finish_reason),
          usage: toUsage(completion.usage),
        };
      } catch (err) {
        throw toProviderError(err, false);
      }
    },
  };
}
