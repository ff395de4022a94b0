import { Readable } from "node:stream";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { compareStreamIds, parseEntry, terminalEventNames, type ReplyEvent } from "./reply-events.ts";

interface Follower {
  key: string;
  /** The last id this follower has been given. */
  lastId: string;
  out: Readable;
}

const BLOCK_MS = 5_000;
const COUNT = 1_000;
const BATCH_ABOVE_STREAMS = 32;
const BATCH_WAIT_MS = 3;

/**
 * Follows many reply streams over one blocking Redis connection: a single
 * XREAD BLOCK covers every stream that someone in this process is following,
 * so a thousand open SSE responses cost one connection, not a thousand.
 * (No library multiplexes XREAD; ioredis gives one connection per blocked call.)
 *
 * Each stream is read from the oldest position any of its followers needs;
 * each follower is handed only the entries past its own `lastId`.
 */
export class ReplyEventFollower {
  readonly #blocking: Redis;
  readonly #control: Redis;
  readonly #log: Logger;
  readonly #followers = new Map<string, Set<Follower>>();
  #blockingClientId: number | null = null;
  /** Counts blocking reads; an interrupt aimed at one read must not hit the next. */
  #readNumber = 0;
  #inRead = false;
  #unblockSent = false;
  #wake: (() => void) | null = null;
  #closed = false;
  readonly #loop: Promise<void>;

  /**
   * `blocking` is used for nothing else (it spends its time inside XREAD BLOCK);
   * `control` is any connection, used to interrupt it when followers join.
   */
  constructor(opts: { blocking: Redis; control: Redis; log: Logger }) {
    this.#blocking = opts.blocking;
    this.#control = opts.control;
    this.#log = opts.log;
    // A reconnected connection has a new client id.
    this.#blocking.on("ready", () => (this.#blockingClientId = null));
    this.#loop = this.#run();
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
      // Node's Readable is the queue between the read loop and each consumer.
      out: new Readable({ objectMode: true, read() {}, highWaterMark: Number.MAX_SAFE_INTEGER }),
    };
    follower.out.once("close", () => this.#remove(follower));
    if (signal) {
      if (signal.aborted) this.#end(follower);
      else signal.addEventListener("abort", () => this.#end(follower), { once: true });
    }
    let group = this.#followers.get(key);
    if (!group) this.#followers.set(key, (group = new Set()));
    group.add(follower);
    this.#nudge();
    return follower.out;
  }

  /** How many followers this process has, for metrics and tests. */
  get size(): number {
    let n = 0;
    for (const g of this.#followers.values()) n += g.size;
    return n;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const group of this.#followers.values()) for (const f of group) this.#end(f);
    this.#followers.clear();
    this.#nudge();
    await this.#loop;
  }

  /** Ends a follower's iteration normally (a consumer that left is not an error). */
  #end(follower: Follower): void {
    this.#remove(follower);
    if (!follower.out.readableEnded) follower.out.push(null);
  }

  #remove(follower: Follower): void {
    const group = this.#followers.get(follower.key);
    if (!group) return;
    group.delete(follower);
    if (group.size === 0) this.#followers.delete(follower.key);
  }

  /** Makes the read loop pick up a changed set of streams now, not after BLOCK_MS. */
  #nudge(): void {
    if (this.#wake) {
      const wake = this.#wake;
      this.#wake = null;
      wake();
      return;
    }
    if (this.#inRead && !this.#unblockSent) {
      this.#unblockSent = true;
      void this.#interrupt(this.#readNumber);
    }
  }

  /**
   * CLIENT UNBLOCK from the control connection. It can overtake the XREAD it
   * aims at (two connections, no ordering between them) and find nothing
   * blocked; then it tries again until that read is blocked or over.
   */
  async #interrupt(readNumber: number): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      if (!this.#inRead || this.#readNumber !== readNumber || this.#blockingClientId === null) return;
      try {
        const unblocked = Number(await this.#control.client("UNBLOCK", this.#blockingClientId));
        if (unblocked === 1) return;
      } catch (err) {
        this.#log.warn({ err }, "could not interrupt the reply-event read");
        return;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      if (this.#followers.size === 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      try {
        this.#blockingClientId ??= Number(await this.#blocking.client("ID"));
        // Marked as reading before the streams are listed: a follower that joins
        // from here on interrupts this read instead of waiting out BLOCK_MS.
        this.#readNumber++;
        this.#unblockSent = false;
        this.#inRead = true;
        const keys = [...this.#followers.keys()];
        const ids = keys.map((k) => this.#oldestPosition(k));
        if (keys.length === 0) {
          this.#inRead = false;
          continue;
        }
        const result = (await this.#blocking.xread(
          "COUNT",
          COUNT,
          "BLOCK",
          BLOCK_MS,
          "STREAMS",
          ...keys,
          ...ids,
        )) as [string, [string, string[]][]][] | null;
        this.#inRead = false;
        if (result) this.#deliver(result);
        // Each read names every followed stream; with many of them, reading again at
        // once for every single new entry costs more than a moment's wait to batch.
        if (result && keys.length > BATCH_ABOVE_STREAMS) await new Promise((r) => setTimeout(r, BATCH_WAIT_MS));
      } catch (err) {
        this.#inRead = false;
        if (this.#closed) break;
        this.#log.warn({ err }, "reading reply events failed; retrying");
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  #oldestPosition(key: string): string {
    let oldest: string | null = null;
    for (const f of this.#followers.get(key) ?? []) {
      if (oldest === null || compareStreamIds(f.lastId, oldest) < 0) oldest = f.lastId;
    }
    return oldest ?? "0-0";
  }

  #deliver(result: [string, [string, string[]][]][]): void {
    for (const [key, entries] of result) {
      const group = this.#followers.get(key);
      if (!group) continue;
      for (const [id, fields] of entries) {
        const event = parseEntry(id, fields);
        for (const f of group) {
          if (compareStreamIds(id, f.lastId) <= 0) continue;
          f.lastId = id;
          f.out.push(event);
          if (event.event === "done") this.#end(f);
        }
      }
    }
  }
}

/**
 * Waits for a reply's end event and returns its data (the final message).
 * Throws an AbortError if `signal` aborts first.
 */
export async function awaitReplyEnd(
  follower: ReplyEventFollower,
  key: string,
  signal: AbortSignal,
): Promise<unknown> {
  for await (const e of follower.follow(key, null, signal)) {
    if (terminalEventNames.has(e.event)) return JSON.parse(e.data) as unknown;
  }
  signal.throwIfAborted();
  throw new Error(`the events of ${key} ended without an end event`);
}
