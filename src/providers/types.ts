/**
 * What a model provider does, with nothing about conversations in it: take a
 * chat request, yield the reply as it is produced.
 */

/*
 * The chat-completions message as users know it. Declared here, structurally,
 * so providers know nothing of the domain: the domain's message schema
 * (src/domain/chat-message.ts) produces values of this shape.
 */

export type ChatRole = "system" | "developer" | "user" | "assistant" | "tool";

/** A text part; extra fields a client put on a part are kept and passed on as given. */
export interface TextPart {
  type: "text";
  text: string;
  [extra: string]: unknown;
}

export interface ImagePart {
  type: "image_url";
  image_url: { url: string; detail?: "auto" | "low" | "high"; [extra: string]: unknown };
  [extra: string]: unknown;
}

export type ContentPart = TextPart | ImagePart;

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: ChatRole;
  /** Null only on an assistant message that carries tool_calls. */
  content: string | ContentPart[] | null;
  name?: string;
  /** Assistant messages only. */
  tool_calls?: ToolCall[];
  /** Tool messages only: the call this answers. */
  tool_call_id?: string;
  /** Assistant messages only, and only when the caller chose to send reasoning back. */
  reasoning_content?: string;
}

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** As the upstream gave them, when it did (cached prompt tokens, reasoning tokens, …). */
  prompt_tokens_details?: Record<string, unknown>;
  completion_tokens_details?: Record<string, unknown>;
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

/** One fragment of a tool call as the upstream streams it: `index` says which call; `id`, `type` and the name come once. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function?: { name?: string; arguments?: string };
}

/**
 * `choice` is the upstream's choice index (absent: 0); only a stateless call
 * asks for more than one choice. A delta may carry only a role, or only
 * reasoning: every chunk is a sign of life.
 */
export type ChatChunk =
  | {
      type: "delta";
      choice?: number;
      role?: "assistant";
      content?: string;
      reasoning?: string;
      toolCalls?: ToolCallDelta[];
      logprobs?: unknown;
    }
  | { type: "finish"; choice?: number; finishReason: FinishReason; usage: TokenUsage | null };

/** One choice of a whole reply. `content` is null when the model only called tools. */
export interface ChatChoice {
  content: string | null;
  reasoning?: string;
  toolCalls?: ToolCall[];
  logprobs?: unknown;
  finishReason: FinishReason;
}

/** A whole reply, for callers that asked not to stream: every choice, in index order. */
export interface ChatResult {
  choices: ChatChoice[];
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

/** What an upstream's error body said besides its message: OpenAI's `error.type`, `code` and `param`. */
export interface UpstreamErrorDetail {
  type: string | null;
  code: string | null;
  param: string | null;
}

/**
 * The upstream refused the request as it was sent (a 4xx other than 408 and 429): sending it again
 * will not help, so it is neither retried nor answered as our own failure.
 */
export const isRefusalStatus = (status: number | null): status is number =>
  status !== null && status >= 400 && status < 500 && status !== 408 && status !== 429;

/**
 * A model call that failed. `status` is the HTTP status the failure maps to
 * for our own clients: the upstream's own 4xx when it refused the request
 * (`refused`), else 502 upstream error or 504 timeout; `upstreamStatus` is
 * what the upstream answered, when it answered at all.
 */
export class ProviderError extends Error {
  readonly code: string;
  readonly status: number;
  readonly upstreamStatus: number | null;
  /** The upstream refused the request as sent: see isRefusalStatus. */
  readonly refused: boolean;
  /** The type, code and param of the upstream's error body, when it sent one (keys masked). */
  readonly upstreamDetail: UpstreamErrorDetail | null;
  /** How long the upstream asked us to wait before trying again (its Retry-After), when it said. */
  readonly retryAfterMs: number | null;

  constructor(
    message: string,
    opts: {
      code: string;
      status?: 502 | 504;
      upstreamStatus?: number | null;
      upstreamDetail?: UpstreamErrorDetail | null;
      retryAfterMs?: number | null;
      cause?: unknown;
    },
  ) {
    super(message, { cause: opts.cause });
    this.name = "ProviderError";
    this.code = opts.code;
    this.upstreamStatus = opts.upstreamStatus ?? null;
    this.refused = isRefusalStatus(this.upstreamStatus);
    this.status = this.refused ? (this.upstreamStatus as number) : (opts.status ?? 502);
    this.upstreamDetail = opts.upstreamDetail ?? null;
    this.retryAfterMs = opts.retryAfterMs ?? null;
  }
}
