/**
 * What a model provider does, with nothing about conversations in it: take a
 * chat request, yield the reply as it is produced.
 */

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Why the model stopped, in the chat-completions vocabulary. */
export type FinishReason = "stop" | "length" | "content_filter" | "tool_calls";

export interface ChatRequest {
  /** The model name as the upstream knows it. */
  model: string;
  messages: ChatMessage[];
  /**
   * Sampling fields (`max_tokens`, `temperature`, `stop`, …) exactly as the
   * client gave them; providers pass unknown ones through untouched.
   */
  params: Record<string, unknown>;
}

export type ChatChunk =
  | { type: "delta"; content: string }
  | { type: "finish"; finishReason: FinishReason; usage: TokenUsage | null };

/** A whole reply, for callers that asked not to stream. */
export interface ChatResult {
  content: string;
  finishReason: FinishReason;
  usage: TokenUsage | null;
}

export interface ChatProvider {
  /** A name for logs and errors ("simulator", "upstream:together"). */
  readonly name: string;
  /**
   * Streams the reply. Yields zero or more deltas, then exactly one `finish`.
   * Throws ProviderError when the model fails, before or after deltas; stops
   * promptly (throwing an AbortError) when `signal` aborts.
   */
  streamChat(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk>;
  /** One request, one answer: the upstream is asked without streaming. */
  completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult>;
}

/**
 * A model call that failed. `status` is the HTTP status the failure maps to
 * for our own clients (502 upstream error, 504 timeout); `upstreamStatus` is
 * what the upstream answered, when it answered at all.
 */
export class ProviderError extends Error {
  readonly code: string;
  readonly status: 502 | 504;
  readonly upstreamStatus: number | null;
  /** How long the upstream asked us to wait before trying again (its Retry-After), when it said. */
  readonly retryAfterMs: number | null;

  constructor(
    message: string,
    opts: {
      code: string;
      status?: 502 | 504;
      upstreamStatus?: number | null;
      retryAfterMs?: number | null;
      cause?: unknown;
    },
  ) {
    super(message, { cause: opts.cause });
    this.name = "ProviderError";
    this.code = opts.code;
    this.status = opts.status ?? 502;
    this.upstreamStatus = opts.upstreamStatus ?? null;
    this.retryAfterMs = opts.retryAfterMs ?? null;
  }
}
