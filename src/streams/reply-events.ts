import type { Redis } from "ioredis";

/**
 * One Redis Stream per reply holds its events in order. The stream entry id
 * is the SSE `id:` (a resume point), so every reader, on any API instance,
 * sees the same events with the same ids.
 */

export const replyEventNames = [
  "message.created",
  "message.delta",
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
export const isStreamId = (id: string): boolean => STREAM_ID.test(id);

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

export class ReplyEventLog {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlSeconds: number;

  constructor(opts: { redis: Redis; prefix: string; ttlSeconds: number }) {
    this.#redis = opts.redis;
    this.#prefix = opts.prefix;
    this.#ttlSeconds = opts.ttlSeconds;
  }

  key(replyId: string): string {
    return `${this.#prefix}:reply-events:${replyId}`;
  }

  /**
   * Appends events in one round trip and (re)sets the retention, so a stream
   * is never left without a TTL, however its writer dies.
   */
  async append(replyId: string, events: NewReplyEvent[]): Promise<string[]> {
    const key = this.key(replyId);
    const pipeline = this.#redis.multi();
    for (const e of events) pipeline.xadd(key, "*", "event", e.event, "data", e.event === "done" ? "[DONE]" : JSON.stringify(e.data));
    pipeline.expire(key, this.#ttlSeconds);
    const results = (await pipeline.exec()) ?? [];
    const ids: string[] = [];
    for (const [err, value] of results.slice(0, events.length)) {
      if (err) throw err;
      ids.push(String(value));
    }
    return ids;
  }

  /** Appends one delta without touching the TTL (set when the reply was created, renewed at its end). */
  async appendDelta(replyId: string, data: unknown): Promise<string> {
    const id = await this.#redis.xadd(this.key(replyId), "*", "event", "message.delta", "data", JSON.stringify(data));
    return String(id);
  }

  /** Events after `afterId` (exclusive; all of them when null), in order. */
  async readAfter(replyId: string, afterId: string | null): Promise<ReplyEvent[]> {
    const start = afterId ? `(${afterId}` : "-";
    const entries = (await this.#redis.xrange(this.key(replyId), start, "+")) as [string, string[]][];
    return entries.map(([id, fields]) => parseEntry(id, fields));
  }

  async exists(replyId: string): Promise<boolean> {
    return (await this.#redis.exists(this.key(replyId))) === 1;
  }
}
