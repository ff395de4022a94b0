import OpenAI from "openai";
import type { UpstreamConfig } from "../config.ts";
import { chatCompletionPayloads, UpstreamErrorEvent, UpstreamStreamFormatError } from "./chat-completion-events.ts";
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

/**
 * Key-like tokens in an upstream's words, masked before they reach a client: a
 * bearer credential, `sk-…`-style keys, and any long run of letters and digits
 * (keys of other vendors; request ids are lost too, which is the cheaper mistake).
 */
const KEY_LIKE: RegExp[] = [
  /\bBearer\s+[^\s"',;]+/gi,
  /\b(?:sk|pk|rk|gsk|xai|key)[-_][A-Za-z0-9_*.-]{6,}/gi,
  /(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}/g,
];

/** `text` with `ownKey` and anything that looks like a key replaced by `[masked]`. */
export function maskKeys(text: string, ownKey?: string): string {
  let masked = ownKey ? text.replaceAll(ownKey, "[masked]") : text;
  for (const pattern of KEY_LIKE) masked = masked.replace(pattern, "[masked]");
  return masked;
}

/**
 * A signal that aborts `ms` from now, and `clear` to drop its timer when the call ends first
 * (AbortSignal.timeout's timer would outlive every call by up to `timeout_ms`).
 */
function callDeadline(ms: number): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException(`no answer within ${ms} ms`, "TimeoutError")), ms);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
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
 * The SDK makes the request and reports statuses; the stream's body is read
 * by chatCompletionPayloads (see there for why). `timeout_ms` bounds the whole
 * call, body included: the SDK's own `timeout` covers the headers only.
 */
export function createOpenAICompatibleProvider(upstream: UpstreamConfig): ChatProvider {
  const client = new OpenAI({
    baseURL: upstream.base_url,
    // The SDK insists on a key; local upstreams often take none.
    apiKey: upstream.api_key || "unused",
    timeout: upstream.timeout_ms,
    maxRetries: 0,
    // Errors are ours to log, without upstream text; OPENAI_LOG=debug would log request bodies.
    logLevel: "off",
  });
  const name = `upstream:${upstream.name}`;

  /** What the upstream said (an error body or event), short, with keys masked. */
  function upstreamSaid(body: unknown, fallback = ""): string {
    let said: string;
    if (isPlainObject(body) && typeof body.message === "string") said = body.message;
    else if (typeof body === "string") said = body;
    else said = fallback;
    if (said === "status code (no body)") said = "";
    said = maskKeys(said.trim(), upstream.api_key).slice(0, 300);
    return said ? `: ${said}` : "";
  }

  /** An APIError's body; the SDK's message, less its status prefix, for a body that is not JSON. */
  function saidInStatus(err: InstanceType<typeof OpenAI.APIError>): string {
    const fallback = err.message.startsWith(`${err.status} `) ? err.message.slice(`${err.status} `.length) : err.message;
    return upstreamSaid(err.error, fallback);
  }

  function timeoutError(cause: unknown): ProviderError {
    return new ProviderError(`upstream ${upstream.name} did not finish within ${upstream.timeout_ms} ms`, {
      code: "upstream_timeout",
      status: 504,
      cause,
    });
  }

  /** `deadline` is the call's own `timeout_ms`; `signal`, the caller's. */
  function toProviderError(err: unknown, signal: AbortSignal, deadline: AbortSignal, afterDeltas: boolean): Error {
    if (signal.aborted) return abortError(err);
    if (deadline.aborted || err instanceof OpenAI.APIConnectionTimeoutError) return timeoutError(err);
    if (err instanceof OpenAI.APIUserAbortError) return abortError(err);
    if (err instanceof Error && err.name === "AbortError") return err;
    if (err instanceof UpstreamErrorEvent) {
      return new ProviderError(`upstream ${upstream.name} reported an error mid-stream${upstreamSaid(err.payload)}`, {
        code: "upstream_error",
        cause: err,
      });
    }
    // APIConnectionError is an APIError without a status.
    if (err instanceof OpenAI.APIError && !(err instanceof OpenAI.APIConnectionError)) {
      const status = typeof err.status === "number" ? err.status : null;
      const what = status === null ? "reported an error" : `answered ${status}`;
      return new ProviderError(`upstream ${upstream.name} ${what}${saidInStatus(err)}`, {
        code: "upstream_error",
        upstreamStatus: status,
        retryAfterMs: parseRetryAfter(err.headers?.get("retry-after")),
        cause: err,
      });
    }
    if (err instanceof SyntaxError || err instanceof UpstreamStreamFormatError) {
      const what = err instanceof UpstreamStreamFormatError && err.kind === "too_large" ? "an event too large" : "a reply that is not valid JSON";
      return new ProviderError(`upstream ${upstream.name} sent ${what}`, { code: "upstream_error", cause: err });
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
      const { signal: deadline, clear: clearDeadline } = callDeadline(upstream.timeout_ms);
      let sawDelta = false;
      let finishReason: string | null = null;
      let usage: TokenUsage | null = null;
      try {
        const response = await client.chat.completions
          .create({ ...body, stream: true, stream_options: streamOptions } as unknown as OpenAI.ChatCompletionCreateParamsStreaming, {
            signal: AbortSignal.any([signal, deadline]),
          })
          .asResponse();
        if (!response.body) throw new UpstreamStreamFormatError("not_json");
        for await (const payload of chatCompletionPayloads(response.body)) {
          const chunk = payload as Partial<OpenAI.ChatCompletionChunk>;
          if (chunk.usage) usage = toUsage(chunk.usage);
          const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
          if (!choice) continue;
          if (choice.finish_reason) finishReason = choice.finish_reason;
          const content = choice.delta?.content;
          if (typeof content === "string" && content) {
            sawDelta = true;
            yield { type: "delta", content };
          }
        }
      } catch (err) {
        throw toProviderError(err, signal, deadline, sawDelta);
      } finally {
        clearDeadline();
      }
      // A body that ends quietly after an abort is no finished reply.
      if (signal.aborted) throw abortError(signal.reason);
      if (deadline.aborted) throw timeoutError(deadline.reason);
      yield { type: "finish", finishReason: toFinishReason(finishReason), usage };
    },

    async completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
      const { stream_options: _so, ...body } = upstreamBody(request);
      const { signal: deadline, clear: clearDeadline } = callDeadline(upstream.timeout_ms);
      try {
        const completion = await client.chat.completions.create(
          { ...body, stream: false } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
          { signal: AbortSignal.any([signal, deadline]) },
        );
        const choice = completion.choices?.[0];
        return {
          choices: [{ content: choice?.message?.content ?? "", finishReason: toFinishReason(choice?.finish_reason) }],
          usage: toUsage(completion.usage),
        };
      } catch (err) {
        throw toProviderError(err, signal, deadline, false);
      } finally {
        clearDeadline();
      }
    },
  };
}
