import { Readable } from "node:stream";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import {
  compareStreamIds,
  lastEventName,
  parsePublished,
  readStreamAfter,
  terminalEventNames,
  type ReplyEvent,
} from "./reply-events.ts";

interface Follower {
  key: string;
  /** The last id this follower has been given. */
  lastId: string;
  out: Readable;
  /** Published events that arrived while the stream was being read: delivered after it. */
  held: ReplyEvent[] | null;
}

/**
 * Follows reply streams for this process: one subscriber connection receives
 * every followed reply's events as they are published, and the stream itself
 * (XRANGE) supplies what came before a follower joined, or while the
 * connection was down. Ids put the two together without gaps or repeats.
 * A thousand open SSE responses cost one connection and no polling.
 */
export class ReplyEventFollower {
  readonly #subscriber: Redis;
  readonly #commands: Redis;
  readonly #log: Logger;
  readonly #followers = new Map<string, Set<Follower>>();
  /** Per channel, the SUBSCRIBE that covers it (resolved once Redis confirmed it). */
  readonly #subscriptions = new Map<string, Promise<unknown>>();

  /** `subscriber` is used for nothing else (it is in subscribe mode); `commands` reads the streams. */
  constructor(opts: { subscriber: Redis; commands: Redis; log: Logger }) {
    this.#subscriber = opts.subscriber;
    this.#commands = opts.commands;
    this.#log = opts.log;
    this.#subscriber.on("message", (channel: string, message: string) => this.#onPublished(channel, message));
    // ioredis subscribes again after a reconnect; what was published meanwhile is read from the streams.
    this.#subscriber.on("ready", () => {
      for (const group of this.#followers.values()) for (const f of group) if (!f.held) void this.#catchUp(f);
    });
  }

  /**
   * The events of stream `key` after `afterId` (from the start when null),
   * as an async iterable that ends after the `done` event. Breaking out of
   * the iteration (or `signal` aborting) stops following.
   */
  follow(key: string, afterId: string | null, signal?: AbortSignal): AsyncIterable<ReplyEvent> {
    const follower: Follower = {
      key,
      lastId: afterId ?? "0-0",
      // Node's Readable is the queue between the subscriber and each consumer.
      out: new Readable({ objectMode: true, read() {}, highWaterMark: Number.MAX_SAFE_INTEGER }),
      held: null,
    };
    follower.out.once("close", () => this.#remove(follower));
    if (signal?.aborted) {
      follower.out.push(null);
      return follower.out;
    }
    signal?.addEventListener("abort", () => this.#end(follower), { once: true });
    let group = this.#followers.get(key);
    if (!group) this.#followers.set(key, (group = new Set()));
    group.add(follower);
    void this.#catchUp(follower);
    return follower.out;
  }

  /** How many followers this process has, for metrics and tests. */
  get size(): number {
    let n = 0;
    for (const g of this.#followers.values()) n += g.size;
    return n;
  }

  async close(): Promise<void> {
    for (const group of this.#followers.values()) for (const f of group) this.#end(f);
    this.#followers.clear();
  }

  /** Subscribes (once per channel), then reads what the stream already holds past the follower's position. */
  async #catchUp(f: Follower): Promise<void> {
    f.held = [];
    try {
      let subscribed = this.#subscriptions.get(f.key);
      if (!subscribed) {
        subscribed = this.#subscriber.subscribe(f.key);
        this.#subscriptions.set(f.key, subscribed);
      }
      await subscribed;
      const from = f.lastId;
      for (const e of await readStreamAfter(this.#commands, f.key, from === "0-0" ? null : from)) this.#deliver(f, e);
      const held = f.held ?? [];
      f.held = null;
      for (const e of held) this.#deliver(f, e);
      // Resumed at or past the end of a finished stream (from its `done`, or from an id beyond it): nothing
      // more will come. Read once more first, so an end written just now is delivered, not skipped.
      if (from !== "0-0" && this.#isFollowing(f) && (await lastEventName(this.#commands, f.key)) === "done") {
        for (const e of await readStreamAfter(this.#commands, f.key, f.lastId)) this.#deliver(f, e);
        if (this.#isFollowing(f)) this.#end(f);
      }
    } catch (err) {
      if (!this.#isFollowing(f)) return;
      this.#log.warn({ err }, "reading reply events failed; retrying");
      setTimeout(() => this.#isFollowing(f) && void this.#catchUp(f), 250).unref();
    }
  }

  #onPublished(channel: string, message: string): void {
    const group = this.#followers.get(channel);
    if (!group) return;
    const event = parsePublished(message);
    if (!event) return;
    for (const f of group) {
      if (f.held) f.held.push(event);
      else this.#deliver(f, event);
    }
  }

  #deliver(f: Follower, e: ReplyEvent): void {
    if (!this.#isFollowing(f)) return;
    if (compareStreamIds(e.id, f.lastId) <= 0) {
      // A follower that resumed from an id beyond the reply's end sees its `done` go by: that ends it too.
      if (e.event === "done") this.#end(f);
      return;
    }
    f.lastId = e.id;
    f.out.push(e);
    if (e.event === "done") this.#end(f);
  }

  #isFollowing(f: Follower): boolean {
    return this.#followers.get(f.key)?.has(f) ?? false;
  }

  /** Ends a follower's iteration normally (a consumer that left is not an error). */
  #end(f: Follower): void {
    this.#remove(f);
    f.out.push(null);
  }

  #remove(f: Follower): void {
    const group = this.#followers.get(f.key);
    if (!group?.delete(f) || group.size > 0) return;
    this.#followers.delete(f.key);
    this.#subscriptions.delete(f.key);
    this.#subscriber.unsubscribe(f.key).catch((err: unknown) => this.#log.warn({ err }, "unsubscribe failed"));
  }
}

/**
 * Waits for a reply's end event and returns its data (the final message).
 * Throws an AbortError if `signal` aborts first.
 */
export async function awaitReplyEnd(follower: ReplyEventFollower, key: string, signal: AbortSignal): Promise<unknown> {
  for await (const e of follower.follow(key, null, signal)) {
    if (terminalEventNames.has(e.event)) return JSON.parse(e.data) as unknown;
  }
  signal.throwIfAborted();
  throw new Error(`the events of ${key} ended without an end event`);
}
