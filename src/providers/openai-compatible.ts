import { randomUUID } from "node:crypto";
import OpenAI from "openai";
import type { UpstreamConfig } from "../config.ts";
import { upstreamFetch } from "./upstream-fetch.ts";
import { chatCompletionPayloads, UpstreamErrorEvent, UpstreamStreamFormatError } from "./chat-completion-events.ts";
import {
  ProviderError,
  type ChatChunk,
  type ChatProvider,
  type ChatRequest,
  type ChatResult,
  type FinishReason,
  type TokenUsage,
  type ToolCall,
  type ToolCallDelta,
  type UpstreamErrorDetail,
} from "./types.ts";

const FINISH_REASONS: ReadonlySet<string> = new Set(["stop", "length", "content_filter", "tool_calls"]);
const toFinishReason = (r: string | null | undefined): FinishReason =>
  r && FINISH_REASONS.has(r) ? (r as FinishReason) : "stop";

function toUsage(u: OpenAI.CompletionUsage | null | undefined): TokenUsage | null {
  if (!u) return null;
  const prompt = u.prompt_tokens ?? 0;
  const completion = u.completion_tokens ?? 0;
  // Some servers leave out total_tokens; it is the sum wherever it is sent.
  const usage: TokenUsage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: u.total_tokens ?? prompt + completion };
  // The details are kept as given: the Responses API reports cached and reasoning tokens from them.
  if (isPlainObject(u.prompt_tokens_details)) usage.prompt_tokens_details = u.prompt_tokens_details;
  if (isPlainObject(u.completion_tokens_details)) usage.completion_tokens_details = u.completion_tokens_details;
  return usage;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Parley's own fields (a turn's settings among them, src/domain/turn-settings.ts): they never reach the upstream from `params`. */
const NOT_UPSTREAM = new Set(["stream", "model", "messages", "send_reasoning", "instructions", "truncation"]);

/**
 * The body as the client gave it: model and messages first, then its other
 * fields in its own key order (schemas whose order matters stay as written),
 * every unknown one passed through untouched.
 */
function upstreamBody(request: ChatRequest): Record<string, unknown> {
  const sampling = Object.entries(request.params).filter(([k]) => !NOT_UPSTREAM.has(k));
  return { model: request.model, messages: request.messages, ...Object.fromEntries(sampling) };
}

/** A finite integer at least 0, or `fallback`. */
const indexOr = (v: unknown, fallback: number): number => (Number.isInteger(v) && (v as number) >= 0 ? (v as number) : fallback);

const nonEmptyString = (v: unknown): string | undefined => (typeof v === "string" && v ? v : undefined);

/**
 * The reasoning in a delta or message: `reasoning_content` (DeepSeek, vLLM's
 * older name, Together) or `reasoning` (vLLM, OpenRouter, Ollama).
 */
const reasoningOf = (m: Record<string, unknown>): string | undefined =>
  nonEmptyString(m.reasoning_content) ?? nonEmptyString(m.reasoning);

/** Arguments as a string: a few servers send them as a JSON object. */
const argumentsText = (v: unknown): string | undefined =>
  typeof v === "string" ? v : isPlainObject(v) ? JSON.stringify(v) : undefined;

/** Tool-call fragments as sent, field by field; a fragment without `index` is its place in the list. */
function toolCallDeltas(raw: unknown): ToolCallDelta[] | undefined {
  if (!Array.isArray(raw) || raw.length === 0) return undefined;
  return raw.filter(isPlainObject).map((t, position) => {
    const delta: ToolCallDelta = { index: indexOr(t.index, position) };
    if (typeof t.id === "string" && t.id) delta.id = t.id;
    if (t.type === "function") delta.type = "function";
    if (isPlainObject(t.function)) {
      const fn: NonNullable<ToolCallDelta["function"]> = {};
      if (typeof t.function.name === "string" && t.function.name) fn.name = t.function.name;
      const args = argumentsText(t.function.arguments);
      if (args !== undefined) fn.arguments = args;
      delta.function = fn;
    }
    return delta;
  });
}

/** Whole tool calls of a non-streamed message, as sent (arguments made a string where they were not). */
function toolCallsOf(raw: unknown): ToolCall[] | undefined {
  if (!Array.isArray(raw) || raw.length === 0) return undefined;
  return raw.filter(isPlainObject).map((t) => {
    const fn = isPlainObject(t.function) ? t.function : {};
    return {
      ...t,
      id: typeof t.id === "string" && t.id ? t.id : newToolCallId(),
      type: "function" as const,
      function: { ...fn, name: typeof fn.name === "string" ? fn.name : "", arguments: argumentsText(fn.arguments) ?? "" },
    };
  });
}

/** An id for a call the upstream sent without one (a few local servers do): a tool result must name its call. */
const newToolCallId = (): string => `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`;

/**
 * A call's first fragment as OpenAI sends it, with `id` and `type`: the SDKs
 * refuse a call without them. `seen` holds the calls (choice:index) that had
 * their first fragment; later fragments pass as sent.
 */
function completeFirstFragments(choice: number, fragments: ToolCallDelta[], seen: Set<string>): ToolCallDelta[] {
  return fragments.map((f) => {
    const key = `${choice}:${f.index}`;
    if (seen.has(key)) return f;
    seen.add(key);
    if (f.id && f.type) return f;
    return { index: f.index, id: f.id || newToolCallId(), type: "function", ...(f.function ? { function: f.function } : {}) };
  });
}

/** One upstream choice's delta as a chunk; null when it carries nothing at all. */
function deltaChunk(choice: Record<string, unknown>, position: number): Extract<ChatChunk, { type: "delta" }> | null {
  const delta = isPlainObject(choice.delta) ? choice.delta : {};
  const chunk: Extract<ChatChunk, { type: "delta" }> = { type: "delta", choice: indexOr(choice.index, position) };
  if (delta.role === "assistant") chunk.role = "assistant";
  const content = nonEmptyString(delta.content);
  if (content !== undefined) chunk.content = content;
  const reasoning = reasoningOf(delta);
  if (reasoning !== undefined) chunk.reasoning = reasoning;
  const toolCalls = toolCallDeltas(delta.tool_calls);
  if (toolCalls) chunk.toolCalls = toolCalls;
  if (choice.logprobs !== undefined && choice.logprobs !== null) chunk.logprobs = choice.logprobs;
  return Object.keys(chunk).length > 2 ? chunk : null;
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
    // Node's http client on shared keep-alive agents: a third of fetch's CPU per call (see upstream-fetch.ts).
    fetch: upstreamFetch,
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

  /** An error body's type, code and param, for our client to see as the upstream sent them (strings only, keys masked). */
  function detailOf(err: InstanceType<typeof OpenAI.APIError>): UpstreamErrorDetail {
    const field = (v: unknown) => (typeof v === "string" && v ? maskKeys(v, upstream.api_key).slice(0, 200) : null);
    return { type: field(err.type), code: field(err.code), param: field(err.param) };
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
        upstreamDetail: detailOf(err),
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
      /** Each choice's finish reason, by index: every choice seen gets a finish. */
      const finishes = new Map<number, string | null>();
      const firstFragments = new Set<string>();
      let usage: TokenUsage | null = null;
      try {
        const response = await client.chat.completions
          .create({ ...body, stream: true, stream_options: streamOptions } as unknown as OpenAI.ChatCompletionCreateParamsStreaming, {
            signal: AbortSignal.any([signal, deadline]),
          })
          .asResponse();
        if (!response.body) throw new UpstreamStreamFormatError("not_json");
        for await (const payload of chatCompletionPayloads(response.body)) {
          const chunk = isPlainObject(payload) ? payload : {};
          if (isPlainObject(chunk.usage)) usage = toUsage(chunk.usage as unknown as OpenAI.CompletionUsage);
          const choices = Array.isArray(chunk.choices) ? chunk.choices.filter(isPlainObject) : [];
          let said = false;
          for (const [position, choice] of choices.entries()) {
            const index = indexOr(choice.index, position);
            if (!finishes.has(index) || choice.finish_reason) finishes.set(index, (choice.finish_reason as string | null) ?? finishes.get(index) ?? null);
            const delta = deltaChunk(choice, position);
            if (!delta) continue;
            if (delta.toolCalls) delta.toolCalls = completeFirstFragments(index, delta.toolCalls, firstFragments);
            if (delta.content !== undefined || delta.reasoning !== undefined || delta.toolCalls) sawDelta = true;
            said = true;
            yield delta;
          }
          // Usage, a keep-alive, a bare finish: still a sign of life for the first-token and idle limits.
          if (!said) yield { type: "delta" };
        }
      } catch (err) {
        throw toProviderError(err, signal, deadline, sawDelta);
      } finally {
        clearDeadline();
      }
      // A body that ends quietly after an abort is no finished reply.
      if (signal.aborted) throw abortError(signal.reason);
      if (deadline.aborted) throw timeoutError(deadline.reason);
      if (finishes.size === 0) finishes.set(0, null);
      const indexes = [...finishes.keys()].sort((a, b) => a - b);
      for (const [i, index] of indexes.entries()) {
        const last = i === indexes.length - 1;
        yield { type: "finish", choice: index, finishReason: toFinishReason(finishes.get(index)), usage: last ? usage : null };
      }
    },

    async completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
      const { stream_options: _so, ...body } = upstreamBody(request);
      const { signal: deadline, clear: clearDeadline } = callDeadline(upstream.timeout_ms);
      try {
        const completion = await client.chat.completions.create(
          { ...body, stream: false } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
          { signal: AbortSignal.any([signal, deadline]) },
        );
        const choices = (Array.isArray(completion.choices) ? completion.choices : []) as unknown[];
        const result: ChatResult = {
          choices: choices
            .filter(isPlainObject)
            .map((choice, position) => ({ choice, index: indexOr(choice.index, position) }))
            .sort((a, b) => a.index - b.index)
            .map(({ choice }) => {
              const message = isPlainObject(choice.message) ? choice.message : {};
              const toolCalls = toolCallsOf(message.tool_calls);
              const reasoning = reasoningOf(message);
              const content = typeof message.content === "string" ? message.content : toolCalls ? null : "";
              return {
                content,
                finishReason: toFinishReason(choice.finish_reason as string | null | undefined),
                ...(reasoning !== undefined ? { reasoning } : {}),
                ...(toolCalls ? { toolCalls } : {}),
                ...(choice.logprobs !== undefined && choice.logprobs !== null ? { logprobs: choice.logprobs } : {}),
              };
            }),
          usage: toUsage(completion.usage),
        };
        if (result.choices.length === 0) result.choices.push({ content: "", finishReason: "stop" });
        return result;
      } catch (err) {
        throw toProviderError(err, signal, deadline, false);
      } finally {
        clearDeadline();
      }
    },
  };
}
