import type { RedisClient } from "../redis/client.ts";
import type { Logger } from "pino";
import {
  compareStreamIds,
  lastEventName,
  parsePublished,
  readStreamAfter,
  terminalEventNames,
  type ReplyEvent,
} from "./reply-events.ts";
import { ReplyEventQueue } from "./reply-event-queue.ts";

/** A reply's end as its record (Postgres) has it, for a follower whose events stopped coming. */
export interface RecordedEnd {
  event: "message.completed" | "message.failed" | "message.cancelled";
  /** The end event's data, as JSON text. */
  data: string;
  /** When the reply ended (ms since the epoch): the end events made from the record take their ids from it. */
  endedAt: number;
  /**
   * The reply as stored, when the record has it: a follower whose deltas do
   * not add up to its content (it missed some while Redis was away) is sent
   * what it lacks before the end, or a `message.reset` and the whole content.
   */
  reply?: { id: string; content: string };
}

/** Looks the reply up in its record: its end, or null while it is still in flight. */
export type RecordedEndCheck = () => Promise<RecordedEnd | null>;

export interface FollowOptions {
  /** Aborting stops following. */
  signal?: AbortSignal | undefined;
  /**
   * Asked when the stream has been idle for the stall bound (or Redis came
   * back): if the reply has ended there, the follower ends from it. Without
   * one, a follower waits for the stream's own `done`.
   */
  recordedEnd?: RecordedEndCheck | undefined;
}

interface Follower {
  key: string;
  /** The last id this follower has been given. */
  lastId: string;
  out: ReplyEventQueue;
  /** Published events that arrived while the stream was being read: delivered after it. */
  held: ReplyEvent[] | null;
  /** It has been given an end event (only `done` may still be missing). */
  sawEnd: boolean;
  recordedEnd: RecordedEndCheck | undefined;
  /** Failed reads of the stream in a row (the retry backs off). */
  failedReads: number;
  /** Counts catch-ups: one that a later catch-up has replaced leaves the follower to it. */
  catchUps: number;
  /**
   * The data of the deltas given since the follower started from the beginning, or since the last
   * `message.reset`; null while it is not known (resumed mid-reply, no reset since).
   */
  deltas: string[] | null;
}

/** The followers of one stream in this process, and when its events were last seen. */
interface FollowedStream {
  followers: Set<Follower>;
  /** When an event of it was last seen, or its record last checked (ms). */
  lastSeenAt: number;
  checking: boolean;
}

/** Orders two stream ids as compareStreamIds does, without splitting them (it runs for every event relayed). */
function compareIds(a: string, b: string): number {
  const ad = a.indexOf("-");
  const bd = b.indexOf("-");
  // Equal-length digit strings compare as their numbers do; ids from the stream's own clock always have 13.
  if (ad === bd && ad > 0) {
    const ms = a.slice(0, ad);
    const other = b.slice(0, bd);
    if (ms !== other) return ms < other ? -1 : 1;
    return Number(a.slice(ad + 1)) - Number(b.slice(bd + 1));
  }
  return compareStreamIds(a, b);
}

const nextStreamId = (id: string): string => {
  const [ms = "0", seq = "0"] = id.split("-");
  return `${ms}-${Number(seq) + 1}`;
};
const laterStreamId = (a: string, b: string): string => (compareIds(a, b) >= 0 ? a : b);

/** How long a stalled follower waits for the stream to answer before ending from the record alone. */
const STREAM_READ_BOUND_MS = 1_000;

/**
 * Follows reply streams for this process: one subscriber connection receives
 * every followed reply's events as they are published, and the stream itself
 * (XRANGE) supplies what came before a follower joined, or while the
 * connection was down. Ids put the two together without gaps or repeats.
 * A thousand open SSE responses cost one connection and no polling.
 *
 * A follower always ends: a stream idle for `stallMs` (its end may never be
 * written: a Redis restart, a worker that died after storing the reply) has
 * its record checked, and a reply that ended there ends its followers from it,
 * with ids after the last one each was given. Only idle streams are checked,
 * by one timer per process, and the check needs no Redis.
 */
export class ReplyEventFollower {
  readonly #subscriber: RedisClient;
  readonly #sharded: boolean;
  readonly #commands: RedisClient;
  readonly #log: Logger;
  readonly #streams = new Map<string, FollowedStream>();
  /** Per channel, the SUBSCRIBE that covers it (resolved once Redis confirmed it). */
  readonly #subscriptions = new Map<string, Promise<unknown>>();
  readonly #stallMs: number;
  readonly #stallTimer: NodeJS.Timeout;

  /**
   * `subscriber` is used for nothing else (it is in subscribe mode); `commands` reads the streams.
   * `stallMs`: how long a stream may be idle before its followers' record is checked.
   */
  /**
   * `sharded`: the streams' events are published with SPUBLISH (ReplyEventLog's `sharded`), so they are
   * read with SSUBSCRIBE; on a Redis Cluster the subscriber must have ioredis' `shardedSubscribers` on.
   */
  constructor(opts: { subscriber: RedisClient; commands: RedisClient; log: Logger; stallMs?: number; sharded?: boolean }) {
    this.#subscriber = opts.subscriber;
    this.#sharded = opts.sharded ?? false;
    this.#commands = opts.commands;
    this.#log = opts.log;
    this.#stallMs = opts.stallMs ?? 5_000;
    this.#subscriber.on(this.#sharded ? "smessage" : "message", (channel: string, message: string) => this.#onPublished(channel, message));
    // After a reconnect, what was published meanwhile is read from the streams, once the subscriptions are
    // confirmed again: ioredis sends its own SUBSCRIBE only after emitting "ready", so a read that went first
    // could miss what was published between the two. Every follower catches up again (one already catching
    // up may have read before this). Redis may have come back without the streams (restarted empty): their
    // records are checked at the next tick.
    this.#subscriber.on("ready", () => {
      this.#subscriptions.clear();
      for (const stream of this.#streams.values()) {
        stream.lastSeenAt = 0;
        for (const f of stream.followers) void this.#catchUp(f);
      }
    });
    this.#stallTimer = setInterval(() => this.#checkStalledStreams(), Math.max(25, Math.floor(this.#stallMs / 4)));
    this.#stallTimer.unref();
  }

  /**
   * The events of stream `key` after `afterId` (from the start when null),
   * as an async iterable that ends after the `done` event. Breaking out of
   * the iteration (or `signal` aborting) stops following.
   */
  follow(key: string, afterId: string | null, opts: FollowOptions = {}): AsyncIterable<ReplyEvent> {
    const follower: Follower = {
      key,
      lastId: afterId ?? "0-0",
      // Its consumer leaving (or reading the end) stops following.
      out: new ReplyEventQueue(() => this.#remove(follower)),
      held: null,
      sawEnd: false,
      recordedEnd: opts.recordedEnd,
      failedReads: 0,
      catchUps: 0,
      deltas: afterId === null ? [] : null,
    };
    const { signal } = opts;
    if (signal?.aborted) {
      follower.out.end();
      return follower.out;
    }
    signal?.addEventListener("abort", () => this.#end(follower), { once: true });
    let stream = this.#streams.get(key);
    if (!stream) this.#streams.set(key, (stream = { followers: new Set(), lastSeenAt: Date.now(), checking: false }));
    stream.followers.add(follower);
    void this.#catchUp(follower);
    return follower.out;
  }

  /** How many followers this process has, for metrics and tests. */
  get size(): number {
    let n = 0;
    for (const s of this.#streams.values()) n += s.followers.size;
    return n;
  }

  async close(): Promise<void> {
    clearInterval(this.#stallTimer);
    for (const stream of this.#streams.values()) for (const f of stream.followers) this.#end(f);
    this.#streams.clear();
  }

  /** Subscribes (once per channel), then reads what the stream already holds past the follower's position. */
  async #catchUp(f: Follower): Promise<void> {
    const run = ++f.catchUps;
    const replaced = () => run !== f.catchUps;
    // What arrived for an earlier catch-up is in the stream, and read below.
    f.held = [];
    try {
      let subscribed = this.#subscriptions.get(f.key);
      if (!subscribed) {
        subscribed = this.#sharded ? this.#subscriber.ssubscribe(f.key) : this.#subscriber.subscribe(f.key);
        this.#subscriptions.set(f.key, subscribed);
      }
      await subscribed;
      if (replaced()) return;
      const from = f.lastId;
      const read = await readStreamAfter(this.#commands, f.key, from === "0-0" ? null : from);
      if (replaced()) return;
      for (const e of read) this.#deliver(f, e);
      const held = f.held ?? [];
      f.held = null;
      for (const e of held) this.#deliver(f, e);
      // Resumed at or past the end of a finished stream (from its `done`, or from an id beyond it): nothing
      // more will come. Read once more first, so an end written just now is delivered, not skipped.
      if (from !== "0-0" && this.#isFollowing(f) && (await lastEventName(this.#commands, f.key)) === "done") {
        for (const e of await readStreamAfter(this.#commands, f.key, f.lastId)) this.#deliver(f, e);
        if (this.#isFollowing(f)) this.#end(f);
      }
      f.failedReads = 0;
    } catch (err) {
      if (!this.#isFollowing(f) || replaced()) return;
      // Once per outage at warn: a Redis that is away fails every follower's read at once.
      if (f.failedReads++ === 0) this.#log.warn({ err }, "reading reply events failed; retrying");
      const delay = Math.min(250 * 2 ** Math.min(f.failedReads - 1, 5), this.#stallMs);
      setTimeout(() => this.#isFollowing(f) && !replaced() && void this.#catchUp(f), delay).unref();
    }
  }

  #onPublished(channel: string, message: string): void {
    const stream = this.#streams.get(channel);
    if (!stream) return;
    const event = parsePublished(message);
    if (!event) return;
    stream.lastSeenAt = Date.now();
    for (const f of stream.followers) {
      if (f.held) f.held.push(event);
      else this.#deliver(f, event);
    }
  }

  #deliver(f: Follower, e: ReplyEvent): void {
    if (!this.#isFollowing(f)) return;
    if (compareIds(e.id, f.lastId) <= 0) {
      // A follower that resumed from an id beyond the reply's end sees its `done` go by: that ends it too.
      if (e.event === "done") this.#end(f);
      return;
    }
    f.lastId = e.id;
    if (terminalEventNames.has(e.event)) f.sawEnd = true;
    if (e.event === "message.reset") f.deltas = [];
    else if (e.event === "message.delta") f.deltas?.push(e.data);
    f.out.push(e);
    if (e.event === "done") this.#end(f);
  }

  /** Streams idle past the bound have their record checked (one check per stream at a time). */
  #checkStalledStreams(): void {
    const now = Date.now();
    for (const stream of this.#streams.values()) {
      if (stream.checking || now - stream.lastSeenAt < this.#stallMs) continue;
      const check = [...stream.followers].find((f) => f.recordedEnd)?.recordedEnd;
      if (!check) continue;
      stream.checking = true;
      void this.#endFromRecord(stream, check).finally(() => {
        stream.checking = false;
        stream.lastSeenAt = Date.now();
      });
    }
  }

  /**
   * Ends a stalled stream's followers if its record says the reply has ended:
   * first with whatever the stream still holds past each one's position (its
   * own end, when only the publication was missed), else with the end made
   * from the record and `done`, with ids after the last one each was given.
   */
  async #endFromRecord(stream: FollowedStream, check: RecordedEndCheck): Promise<void> {
    let end: RecordedEnd | null;
    try {
      end = await check();
    } catch (err) {
      this.#log.warn({ err }, "checking a stalled reply's record failed; trying again later");
      return;
    }
    if (!end) return;
    const followers = [...stream.followers];
    await Promise.all(followers.map((f) => this.#readBriefly(f)));
    for (const f of followers) {
      if (!this.#isFollowing(f)) continue;
      let id = laterStreamId(`${end.endedAt}-1`, nextStreamId(f.lastId));
      const deliverNext = (event: ReplyEvent["event"], data: string) => {
        this.#deliver(f, { id, event, data });
        id = nextStreamId(id);
      };
      if (!f.sawEnd) {
        for (const e of missingContent(f, end)) deliverNext(e.event, e.data);
        deliverNext(end.event, end.data);
      }
      deliverNext("done", "[DONE]");
    }
  }

  /** Delivers what the stream holds past the follower's position, if Redis answers within a short bound. */
  async #readBriefly(f: Follower): Promise<void> {
    const read = readStreamAfter(this.#commands, f.key, f.lastId === "0-0" ? null : f.lastId).then(
      (events) => events,
      () => [] as ReplyEvent[],
    );
    const events = await Promise.race([read, new Promise<ReplyEvent[]>((r) => setTimeout(r, STREAM_READ_BOUND_MS, []).unref())]);
    for (const e of events) this.#deliver(f, e);
  }

  #isFollowing(f: Follower): boolean {
    return this.#streams.get(f.key)?.followers.has(f) ?? false;
  }

  /** Ends a follower's iteration normally (a consumer that left is not an error). */
  #end(f: Follower): void {
    this.#remove(f);
    f.out.end();
  }

  #remove(f: Follower): void {
    const stream = this.#streams.get(f.key);
    if (!stream?.followers.delete(f) || stream.followers.size > 0) return;
    this.#streams.delete(f.key);
    this.#subscriptions.delete(f.key);
    (this.#sharded ? this.#subscriber.sunsubscribe(f.key) : this.#subscriber.unsubscribe(f.key)).catch((err: unknown) => this.#log.warn({ err }, "unsubscribe failed"));
  }
}

/**
 * What a follower ending from the record lacks for its content to be the
 * stored one: nothing, the rest of it (what it was given is where the stored
 * content starts), or a start-over with the whole of it (it was given
 * something else, or it resumed mid-reply and what it had is not known here).
 */
function missingContent(f: Follower, end: RecordedEnd): Pick<ReplyEvent, "event" | "data">[] {
  if (!end.reply) return [];
  const { id, content } = end.reply;
  const given = f.deltas?.map(deltaContent).join("");
  const delta = (text: string) => ({ event: "message.delta" as const, data: JSON.stringify({ id, delta: { content: text } }) });
  if (given === content) return [];
  if (given !== undefined && content.startsWith(given)) return [delta(content.slice(given.length))];
  return [{ event: "message.reset", data: JSON.stringify({ id, reason: "events_lost" }) }, ...(content ? [delta(content)] : [])];
}

function deltaContent(data: string): string {
  try {
    const content = (JSON.parse(data) as { delta?: { content?: unknown } }).delta?.content;
    return typeof content === "string" ? content : "";
  } catch {
    return "";
  }
}

/**
 * Waits for a reply's end event and returns its data (the final message).
 * Throws an AbortError if `signal` aborts first. With `recordedEnd`, a reply
 * whose events stop ends from its record (see ReplyEventFollower).
 */
export async function awaitReplyEnd(
  follower: ReplyEventFollower,
  key: string,
  signal: AbortSignal,
  recordedEnd?: RecordedEndCheck,
): Promise<unknown> {
  for await (const e of follower.follow(key, null, { signal, recordedEnd })) {
    if (terminalEventNames.has(e.event)) return JSON.parse(e.data) as unknown;
  }
  signal.throwIfAborted();
  throw new Error(`the events of ${key} ended without an end event`);
}
