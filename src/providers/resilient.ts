import { setTimeout as sleepFor } from "node:timers/promises";
import { errorType } from "../observability/spans.ts";
import { noteRetry } from "../observability/model-call-spans.ts";
import { ProviderError, type ChatChunk, type ChatProvider, type ChatRequest, type ChatResult } from "./types.ts";

export interface ResiliencePolicy {
  /** Further attempts after the first, for failures before any token. */
  maxRetries: number;
  /** The first backoff; each retry doubles it, up to `maxDelayMs`, with full jitter. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** How long to wait for the first token (or a whole non-streamed answer). */
  firstTokenTimeoutMs: number;
  /** How long a stream may go without a token once it has started. */
  idleTimeoutMs: number;
  random?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<unknown>;
  /** Told of each failed attempt and each retry (the metrics: src/observability/metrics.ts). */
  observer?: { attemptFailed(code: string, upstreamStatus: number | null): void; retried(): void };
}

/**
 * The reason an attempt's controller is aborted with once the attempt is over (its call ended, failed, or its
 * consumer left): made once, since an abort without a reason builds a DOMException and its stack every time.
 */
const ATTEMPT_OVER = new DOMException("The attempt is over.", "AbortError");

/** Worth another try: the upstream was busy, broken or unreachable, and nothing has been said yet. */
function isRetryable(err: unknown): err is ProviderError {
  if (!(err instanceof ProviderError)) return false;
  const s = err.upstreamStatus;
  if (s !== null) return s === 429 || s === 408 || s >= 500;
  return err.code === "upstream_timeout" || err.code === "upstream_unreachable";
}

/** A chunk a consumer acts on: what it carried cannot be taken back by starting the call over. */
function saysSomething(chunk: ChatChunk): boolean {
  if (chunk.type === "finish") return true;
  return chunk.content !== undefined || chunk.reasoning !== undefined || chunk.toolCalls !== undefined || chunk.logprobs !== undefined;
}

/**
 * A limit on each wait for the next chunk, kept by one timer re-armed per wait
 * (`refresh`), where a timer, a timeout promise and a race per chunk cost the
 * worker an allocation-heavy step for every token it relays. Only a wait in
 * progress can time out: the time the consumer spends between chunks is not
 * counted (the timer that fires then does nothing, and the next wait re-arms it).
 */
class WaitLimit {
  readonly #onTimeout: () => void;
  #timer: NodeJS.Timeout | null = null;
  #ms = 0;
  /** The wait in progress: how to fail it, and the error it fails with. */
  #waiting: { reject: (err: unknown) => void; error: () => Error } | null = null;

  constructor(onTimeout: () => void) {
    this.#onTimeout = onTimeout;
  }

  /** `work`, unless `ms` pass first: then `onTimeout` runs and the wait rejects with `error()`. */
  wait<T>(work: Promise<T>, ms: number, error: () => Error): Promise<T> {
    if (this.#timer && ms === this.#ms) this.#timer.refresh();
    else {
      if (this.#timer) clearTimeout(this.#timer);
      this.#ms = ms;
      this.#timer = setTimeout(() => this.#expire(), ms);
    }
    return new Promise<T>((resolve, reject) => {
      const waiting = { reject, error };
      this.#waiting = waiting;
      const settle = () => {
        if (this.#waiting === waiting) this.#waiting = null;
      };
      work.then(
        (value) => (settle(), resolve(value)),
        (err: unknown) => (settle(), reject(err)), // after a timeout: expected, and already answered
      );
    });
  }

  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#waiting = null;
  }

  #expire(): void {
    const waiting = this.#waiting;
    if (!waiting) return;
    this.#waiting = null;
    this.#onTimeout();
    waiting.reject(waiting.error());
  }
}

/**
 * Wraps a provider with what a model call needs to be dependable: a limit on
 * the time to the first token and between tokens, and retries with
 * exponential backoff and full jitter (honouring Retry-After) for failures
 * before the first token. After a token has been streamed a failure is final:
 * the reply keeps what it had. (Hand-written: the retry libraries we looked at
 * retry promises, not async iterators that must not retry once they yielded.)
 */
export function withResilience(provider: ChatProvider, policy: ResiliencePolicy): ChatProvider {
  const random = policy.random ?? Math.random;
  const sleep = policy.sleep ?? ((ms: number, signal: AbortSignal) => sleepFor(ms, undefined, { signal }));

  /** The wait before retry `attempt` (0-based), or null when waiting is pointless. */
  function backoff(attempt: number, err: ProviderError): number | null {
    const jittered = Math.floor(random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt));
    if (err.retryAfterMs === null) return jittered;
    return err.retryAfterMs > policy.maxDelayMs ? null : Math.max(err.retryAfterMs, jittered);
  }

  function timeoutError(what: string, ms: number): ProviderError {
    return new ProviderError(`${provider.name} ${what} within ${ms} ms`, { code: "upstream_timeout", status: 504 });
  }

  /** `work`, unless `ms` pass first: then `onTimeout` runs and the timeout error is thrown. */
  async function within<T>(work: Promise<T>, ms: number, onTimeout: () => void, what: string): Promise<T> {
    const limit = new WaitLimit(onTimeout);
    try {
      return await limit.wait(work, ms, () => timeoutError(what, ms));
    } finally {
      limit.clear();
    }
  }

  /** A failed attempt, for the metrics (a call its caller stopped did not fail upstream). */
  function noteFailure(err: unknown, signal: AbortSignal): void {
    if (err instanceof ProviderError && !signal.aborted) policy.observer?.attemptFailed(err.code, err.upstreamStatus);
  }

  async function retryOrThrow(err: unknown, attempt: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted || attempt >= policy.maxRetries || !isRetryable(err)) throw err;
    const delay = backoff(attempt, err);
    if (delay === null) throw err;
    noteRetry(attempt, errorType(err), delay);
    policy.observer?.retried();
    await sleep(delay, signal);
  }

  return {
    name: provider.name,

    async *streamChat(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
      for (let attempt = 0; ; attempt++) {
        const attemptAbort = new AbortController();
        const iterator = provider.streamChat(request, AbortSignal.any([signal, attemptAbort.signal]))[Symbol.asyncIterator]();
        // Any chunk is life (a thinking model streams reasoning, a server sends a role-only chunk or usage
        // first): from then on the idle limit applies. Only a chunk that said something makes a failure final.
        let alive = false;
        let said = false;
        let ended = false;
        // One timer for the attempt, re-armed for each chunk (see WaitLimit).
        const limit = new WaitLimit(() => attemptAbort.abort());
        const quiet = () => timeoutError("sent nothing", policy.idleTimeoutMs);
        const noFirstToken = () => timeoutError("sent no first token", policy.firstTokenTimeoutMs);
        try {
          for (;;) {
            const next = alive
              ? await limit.wait(iterator.next(), policy.idleTimeoutMs, quiet)
              : await limit.wait(iterator.next(), policy.firstTokenTimeoutMs, noFirstToken);
            ended = next.done === true;
            if (next.done) return;
            alive = true;
            if (saysSomething(next.value)) said = true;
            yield next.value;
          }
        } catch (err) {
          noteFailure(err, signal);
          if (said) throw err;
          await retryOrThrow(err, attempt, signal);
        } finally {
          limit.clear();
          // Closes the upstream call when the consumer stops early or the attempt failed; one that ended has nothing open.
          if (!ended) attemptAbort.abort(ATTEMPT_OVER);
        }
      }
    },

    async completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
      for (let attempt = 0; ; attempt++) {
        const attemptAbort = new AbortController();
        try {
          return await within(
            provider.completeChat(request, AbortSignal.any([signal, attemptAbort.signal])),
            policy.firstTokenTimeoutMs,
            () => attemptAbort.abort(),
            "did not answer",
          );
        } catch (err) {
          // An answer has nothing left open; a failure may (a timed-out call, a body half read).
          attemptAbort.abort(ATTEMPT_OVER);
          noteFailure(err, signal);
          await retryOrThrow(err, attempt, signal);
        }
      }
    },
  };
}
