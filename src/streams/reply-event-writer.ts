import { setTimeout as sleep } from "node:timers/promises";
import { deltaEventData, isEmptyDelta, joinDeltas, StreamedReply, type ReplyDelta } from "../domain/reply-delta.ts";
import { streamIdMs, type NewReplyEvent, type ReplyEventLog, type ReplyEventWrite } from "./reply-events.ts";

/** The reply's stream takes no more writes from this run: it has ended, or a newer attempt writes it. */
export class ReplyStreamClosedError extends Error {
  override name = "ReplyStreamClosedError";
  readonly reason: "ended" | "superseded";
  constructor(reason: "ended" | "superseded") {
    super(reason === "ended" ? "the reply's events have ended" : "a newer attempt generates the reply");
    this.reason = reason;
  }
}

/** Redis stayed unreachable longer than the outage bound: the reply's events could not be written. */
export class ReplyEventsUnavailableError extends Error {
  override name = "ReplyEventsUnavailableError";
  readonly code = "events_unavailable";
}

const FIRST_RETRY_MS = 50;
const MAX_RETRY_MS = 1_000;

/** Deltas held for one write at most: past it, `delta` waits (a slow Redis slows the model call, not memory). */
const MAX_HELD = 256;

/**
 * One run's writes to its reply's stream, in order, fenced by the run's
 * attempt. One write is in flight at a time; the deltas handed over meanwhile
 * are held and go out together in the next (one script call, one event each),
 * so a loaded worker makes fewer, larger writes instead of falling behind its
 * upstream one round trip per token. While Redis is away each write is retried
 * (for up to `outageMs`) and the deltas that arrive meanwhile are joined into
 * one, so a short outage costs a pause, not the reply. `published` is exactly
 * the content the stream holds, whatever happens, and `publishedReply` its
 * reasoning, tool calls and logprobs too: the stored reply is made of them.
 */
export class ReplyEventWriter {
  readonly #events: ReplyEventLog;
  readonly #replyId: string;
  readonly #attempt: number;
  readonly #outageMs: number;
  readonly #signal: AbortSignal | undefined;
  readonly #ttlSeconds: number | undefined;
  readonly #stop = new AbortController();
  #seq = 0;
  readonly #published = new StreamedReply();
  /** Deltas handed over and not yet in a write, in order. */
  #held: ReplyDelta[] = [];
  #flushing: Promise<void> | null = null;
  #inOutage = false;
  #failure: Error | null = null;
  /** Callers of `delta` waiting for room (MAX_HELD): let go once a write takes the held deltas, or an outage starts. */
  #waiting: (() => void)[] = [];

  /** `ttlSeconds`: the stream's retention (the log's default when not given), renewed by the end. */
  constructor(opts: {
    events: ReplyEventLog;
    replyId: string;
    attempt: number;
    outageMs: number;
    signal?: AbortSignal;
    ttlSeconds?: number;
  }) {
    this.#events = opts.events;
    this.#replyId = opts.replyId;
    this.#attempt = opts.attempt;
    this.#outageMs = opts.outageMs;
    this.#signal = opts.signal;
    this.#ttlSeconds = opts.ttlSeconds;
  }

  /** Aborts when this run can write no more (its stream closed to it, or Redis stayed away): stop generating. */
  get stopped(): AbortSignal {
    return this.#stop.signal;
  }

  /** The content of every delta written to the stream so far. */
  get published(): string {
    return this.#published.content;
  }

  /** Everything written to the stream so far (content, reasoning, tool calls, logprobs), put together. */
  get publishedReply(): StreamedReply {
    return this.#published;
  }

  /** Claims the stream for this attempt (writes of older attempts are refused from now on), writing `events` first. */
  async start(events: NewReplyEvent[] = []): Promise<void> {
    await this.#write(events, false);
  }

  /**
   * Hands a delta over: it goes out with the next write (at once when none is
   * in flight). Resolves at once, or, with MAX_HELD deltas already held, once a
   * write has taken them; rejects once the writer has failed. `drain` waits
   * for the write.
   */
  delta(given: string | ReplyDelta): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    const delta = typeof given === "string" ? { content: given } : given;
    if (isEmptyDelta(delta)) return Promise.resolve();
    const last = this.#held.at(-1);
    // While Redis is away, held deltas are joined: what a long outage holds stays one event, not thousands.
    if (this.#inOutage && last && (last.choice ?? 0) === (delta.choice ?? 0)) this.#held[this.#held.length - 1] = joinDeltas(last, delta);
    else this.#held.push(delta);
    this.#flushing ??= this.#flush();
    if (this.#inOutage || this.#held.length < MAX_HELD) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Waits until every delta handed over is written; throws why not, if they cannot be. */
  async drain(): Promise<void> {
    await this.#flushing;
    if (this.#failure) throw this.#failure;
  }

  /**
   * Writes the end (terminal event and `done`) after the deltas, retried as
   * they are. After an outage that failed the writer, the end is tried again
   * with a fresh bound. Resolves to how the write went: "ended" and
   * "superseded" mean the stream had closed to this run (its end is not needed).
   */
  async end(events: NewReplyEvent[]): Promise<"ok" | "ended" | "superseded"> {
    await this.#flushing;
    if (this.#failure instanceof ReplyStreamClosedError) return this.#failure.reason;
    this.#failure = null;
    try {
      await this.#write(events, true);
      return "ok";
    } catch (err) {
      if (err instanceof ReplyStreamClosedError) return err.reason;
      throw err;
    }
  }

  async #flush(): Promise<void> {
    while (this.#held.length > 0 && !this.#failure) {
      const deltas = this.#held;
      this.#held = [];
      this.#letGo();
      const id = this.#replyId;
      const events: NewReplyEvent[] = deltas.map((d) => ({
        event: "message.delta",
        data: d.choice ? { id, choice: d.choice, delta: deltaEventData(d) } : { id, delta: deltaEventData(d) },
      }));
      try {
        const ids = await this.#write(events, false);
        // Each delta stamped with its own event id's ms, as a read of the stream stamps it, so the cancel path and
        // this one agree. `published` is the first choice's: the only one a reply has (a stateless call keeps the others itself).
        for (const [i, d] of deltas.entries()) {
          const eventId = ids[i];
          if (!d.choice) this.#published.add(d, eventId === undefined ? Date.now() : streamIdMs(eventId));
        }
      } catch {
        // #failure is set: later deltas reject, drain() throws it.
      }
    }
    // Cleared in the same tick as the loop's last check, so a delta handed over now starts a new flush.
    this.#flushing = null;
    this.#letGo();
  }

  /**
   * One write, retried with the same sequence number (so it is taken once) until Redis answers or the bound
   * passes; the ids it wrote (none when an earlier try had already written it).
   */
  async #write(events: NewReplyEvent[], end: boolean): Promise<string[]> {
    const seq = ++this.#seq;
    let outageStarted: number | null = null;
    let delay = FIRST_RETRY_MS;
    let resync = false;
    for (;;) {
      let written: ReplyEventWrite;
      try {
        written = await this.#events.write(this.#replyId, resync ? this.#resynced(events) : events, {
          attempt: this.#attempt,
          seq,
          end,
          resync,
          renewTtl: end,
          ...(this.#ttlSeconds === undefined ? {} : { ttlSeconds: this.#ttlSeconds }),
        });
      } catch (cause) {
        outageStarted ??= Date.now();
        this.#inOutage = true;
        this.#letGo();
        if (Date.now() - outageStarted >= this.#outageMs || this.#signal?.aborted) {
          throw this.#fail(new ReplyEventsUnavailableError(`Redis was unreachable for ${this.#outageMs} ms`, { cause }));
        }
        await sleep(delay);
        delay = Math.min(delay * 2, MAX_RETRY_MS);
        continue;
      }
      this.#inOutage = false;
      if (written.status === "lost") {
        // Redis came back empty: followers may have missed what it held, so the stream starts over.
        resync = true;
        continue;
      }
      if (written.status === "ended" || written.status === "superseded") throw this.#fail(new ReplyStreamClosedError(written.status));
      return written.status === "ok" ? written.ids : [];
    }
  }

  /** `events` after a start-over that carries everything written before (followers drop what they had). */
  #resynced(events: NewReplyEvent[]): NewReplyEvent[] {
    const id = this.#replyId;
    const whole = this.#published.asDelta();
    return [
      { event: "message.reset", data: { id, reason: "events_lost" } },
      ...(isEmptyDelta(whole) ? [] : [{ event: "message.delta" as const, data: { id, delta: deltaEventData(whole) } }]),
      ...events,
    ];
  }

  #fail(err: Error): Error {
    this.#failure = err;
    this.#stop.abort(err);
    this.#letGo();
    return err;
  }

  #letGo(): void {
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}
