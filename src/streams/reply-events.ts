import type { Redis } from "ioredis";

/**
 * One Redis Stream per reply holds its events in order. The stream entry id
 * is the SSE `id:` (a resume point), so every reader, on any API instance,
 * sees the same events with the same ids.
 */

export const replyEventNames = [
  "message.created",
  "message.delta",
  /** The reply starts over (its worker was lost): drop the content received so far. */
  "message.reset",
  "message.completed",
  "message.failed",
  "message.cancelled",
  "done",
] as const;
export type ReplyEventName = (typeof replyEventNames)[number];

export const terminalEventNames: ReadonlySet<ReplyEventName> = new Set([
  "message.completed",
  "message.failed",
  "message.cancelled",
]);

export interface ReplyEvent {
  /** The Redis Stream entry id, `<ms>-<n>`: never "0", so safe as an SSE id. */
  id: string;
  event: ReplyEventName;
  /** JSON text, written to SSE `data:` as is. */
  data: string;
}

export interface NewReplyEvent {
  event: ReplyEventName;
  data: unknown;
}

const STREAM_ID = /^\d+-\d+$/;
const MAX_STREAM_ID_PART = 2n ** 64n - 1n;
/** `<ms>-<seq>`, each part a 64-bit unsigned number: Redis refuses any other id (and a reader would retry it forever). */
export const isStreamId = (id: string): boolean =>
  STREAM_ID.test(id) && id.split("-").every((part) => BigInt(part) <= MAX_STREAM_ID_PART);

/** Orders two stream ids (`ms-seq`): negative, zero or positive. */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split("-").map(Number);
  const [bm = 0, bs = 0] = b.split("-").map(Number);
  return am !== bm ? am - bm : as - bs;
}

export function parseEntry(id: string, fields: string[]): ReplyEvent {
  let event: string | undefined;
  let data = "null";
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "event") event = fields[i + 1];
    else if (fields[i] === "data") data = fields[i + 1] ?? "null";
  }
  return { id, event: (event ?? "message.delta") as ReplyEventName, data };
}

/**
 * XADD and PUBLISH of the same event in one step: the stream keeps the event
 * for replay, the publication carries it at once to whoever follows the reply
 * (`<id> <event> <data>`), and the two cannot disagree on its id.
 */
const APPEND_SCRIPT = `
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1], 'data', ARGV[2])
if ARGV[3] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return id`;

type AppendCommand = (key: string, event: string, data: string, ttl: string) => Promise<string>;

/** A published event, as `<id> <event> <data>`. */
export function parsePublished(message: string): ReplyEvent | null {
  const first = message.indexOf(" ");
  const second = message.indexOf(" ", first + 1);
  if (first < 0 || second < 0) return null;
  return {
    id: message.slice(0, first),
    event: message.slice(first + 1, second) as ReplyEventName,
    data: message.slice(second + 1),
  };
}

export class ReplyEventLog {
  readonly #redis: Redis & { appendReplyEvent: AppendCommand };
  readonly #prefix: string;
  readonly #ttlSeconds: number;

  constructor(opts: { redis: Redis; prefix: string; ttlSeconds: number }) {
    // ioredis runs it with EVALSHA, loading the script where Redis does not know it yet.
    opts.redis.defineCommand("appendReplyEvent", { numberOfKeys: 1, lua: APPEND_SCRIPT });
    this.#redis = opts.redis as Redis & { appendReplyEvent: AppendCommand };
    this.#prefix = opts.prefix;
    this.#ttlSeconds = opts.ttlSeconds;
  }

  /** The stream's key, which is also the channel its events are published on. */
  key(replyId: string): string {
    return `${this.#prefix}:reply-events:${replyId}`;
  }

  /**
   * Appends (and publishes) events in one round trip and (re)sets the
   * retention, so a stream is never left without a TTL, however its writer dies.
   */
  async append(replyId: string, events: NewReplyEvent[], ttlSeconds = this.#ttlSeconds): Promise<string[]> {
    const key = this.key(replyId);
    const pipeline = this.#redis.pipeline() as unknown as { appendReplyEvent(...args: string[]): void; exec(): Promise<[Error | null, unknown][] | null> };
    events.forEach((e, i) => {
      const data = e.event === "done" ? "[DONE]" : JSON.stringify(e.data);
      pipeline.appendReplyEvent(key, e.event, data, i === events.length - 1 ? String(ttlSeconds) : "");
    });
    const ids: string[] = [];
    for (const [err, value] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      ids.push(String(value));
    }
    return ids;
  }

  /** Appends one delta without touching the TTL (set when the reply was created, renewed at its end). */
  async appendDelta(replyId: string, data: unknown): Promise<string> {
    return String(await this.#redis.appendReplyEvent(this.key(replyId), "message.delta", JSON.stringify(data), ""));
  }

  /** Whether the reply's events are still retained. */
  async exists(replyId: string): Promise<boolean> {
    return (await this.#redis.exists(this.key(replyId))) === 1;
  }

  /** Events after `afterId` (exclusive; all of them when null), in order. */
  async readAfter(replyId: string, afterId: string | null): Promise<ReplyEvent[]> {
    return readStreamAfter(this.#redis, this.key(replyId), afterId);
  }
}

/** The name of the stream's newest event (`done` once the reply has ended), or null for no stream. */
export async function lastEventName(redis: Redis, key: string): Promise<string | null> {
  const [entry] = (await redis.xrevrange(key, "+", "-", "COUNT", 1)) as [string, string[]][];
  return entry ? parseEntry(entry[0], entry[1]).event : null;
}

export async function readStreamAfter(redis: Redis, key: string, afterId: string | null): Promise<ReplyEvent[]> {
  const entries = (await redis.xrange(key, afterId ? `(${afterId}` : "-", "+")) as [string, string[]][];
  return entries.map(([id, fields]) => parseEntry(id, fields));
}
