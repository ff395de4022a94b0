import type { RedisClient } from "../redis/client.ts";

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

/** The ms a stream id (`<ms>-<seq>`) carries: when the event was written. NaN for an id that is not one. */
export function streamIdMs(id: string): number {
  const dash = id.indexOf("-");
  return dash > 0 ? Number(id.slice(0, dash)) : Number.NaN;
}

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
 * Writes events to a reply's stream in one step: each is XADDed and PUBLISHed
 * (`<id> <event> <data>`), so the stream (for replay) and the publication (for
 * whoever follows the reply now) cannot disagree on an id.
 *
 * The reply's fence (a hash in the same hash slot) decides whether the write
 * is taken:
 * - once the stream has ended (`end` was written), nothing more is: no delta
 *   after `done`, and a second end is refused;
 * - once it is sealed (a cancel is ending the reply), only an end is taken;
 * - a write carrying a run's attempt is refused once a newer attempt has
 *   written (a run that lost its job cannot write over the one that took it);
 * - a write carrying a sequence number the attempt has already written is
 *   acknowledged without writing it again (a retry after a lost answer);
 * - a write carrying a sequence number past the first, on a reply whose fence
 *   is gone, is refused as `lost`: Redis lost its data (restarted empty), and
 *   the writer must start the stream over (`resync`) with what it had written.
 *
 * KEYS: stream, fence. ARGV: attempt ('' = unfenced), seq (''), 'end', 'seal' or '',
 * ttl seconds ('' = none), '1' to renew the TTL (else only set where missing,
 * as after Redis lost its data), '1' for a resync, then event/data pairs.
 * Returns {'ok', ids...}, {'written'}, {'ended'}, {'superseded'} or {'lost'}.
 */
const WRITE_SCRIPT = `
local stream, fence = KEYS[1], KEYS[2]
local state = redis.call('HMGET', fence, 'ended', 'sealed', 'attempt', 'seq')
if state[1] or (state[2] and ARGV[3] ~= 'end') then return {'ended'} end
if ARGV[1] ~= '' then
  local attempt = tonumber(ARGV[1])
  local stored = state[3]
  if not stored and ARGV[2] ~= '' and tonumber(ARGV[2]) > 1 and ARGV[6] ~= '1' then return {'lost'} end
  local current = tonumber(stored or '0')
  if attempt < current then return {'superseded'} end
  local written = tonumber(state[4] or '0')
  if attempt > current then
    redis.call('HSET', fence, 'attempt', attempt, 'seq', 0)
    written = 0
  end
  if ARGV[2] ~= '' then
    local seq = tonumber(ARGV[2])
    if seq <= written then return {'written'} end
    redis.call('HSET', fence, 'seq', seq)
  end
end
local result = {'ok'}
for i = 7, #ARGV, 2 do
  local id = redis.call('XADD', stream, '*', 'event', ARGV[i], 'data', ARGV[i + 1])
  redis.call('PUBLISH', stream, id .. ' ' .. ARGV[i] .. ' ' .. ARGV[i + 1]) -- the publish command
  result[#result + 1] = id
end
if ARGV[3] == 'end' then redis.call('HSET', fence, 'ended', 1) end
if ARGV[3] == 'seal' then redis.call('HSET', fence, 'sealed', 1) end
if ARGV[4] ~= '' then
  for _, key in ipairs({stream, fence}) do
    if ARGV[5] == '1' or redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, ARGV[4]) end
  end
end
return result`;

type WriteCommand = (stream: string, fence: string, ...args: string[]) => Promise<string[]>;

/** How a write to a reply's stream went. */
export type ReplyEventWrite =
  | { status: "ok"; ids: string[] }
  /** This attempt had already written this sequence number: not written twice. */
  | { status: "written" }
  /** The stream has ended (or is sealed, when this was not an end): nothing more is taken. */
  | { status: "ended" }
  /** A newer attempt writes this reply now. */
  | { status: "superseded" }
  /** Redis lost the stream (restarted empty) after this attempt had written to it: write it again with `resync`. */
  | { status: "lost" };

export interface ReplyEventWriteOptions {
  /** The writing run's attempt; unfenced writers (cancel, sweep, the API) pass none. */
  attempt?: number;
  /** The attempt's write number, counting from 1: a retried write is taken once. */
  seq?: number;
  /** These events end the stream: nothing is taken after them. */
  end?: boolean;
  /** Seals the stream: from now on only an end is taken. */
  seal?: boolean;
  /** Starts the stream over after Redis lost it (taken where the fence is gone). */
  resync?: boolean;
  /** The retention to set (renewed when `renewTtl`, else only where the stream has none). */
  ttlSeconds?: number;
  renewTtl?: boolean;
}

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
  readonly #redis: RedisClient & { writeReplyEvents: WriteCommand };
  readonly #prefix: string;
  readonly #ttlSeconds: number;

  /**
   * `sharded`: publish with SPUBLISH (Redis 7), on a Redis Cluster: the channel is the stream's key, so the
   * event goes to the subscribers of the stream's own shard instead of every node over the cluster bus.
   */
  constructor(opts: { redis: RedisClient; prefix: string; ttlSeconds: number; sharded?: boolean }) {
    const lua = opts.sharded ? WRITE_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'") : WRITE_SCRIPT;
    // ioredis runs it with EVALSHA, loading the script where Redis does not know it yet.
    opts.redis.defineCommand("writeReplyEvents", { numberOfKeys: 2, lua });
    this.#redis = opts.redis as RedisClient & { writeReplyEvents: WriteCommand };
    this.#prefix = opts.prefix;
    this.#ttlSeconds = opts.ttlSeconds;
  }

  /**
   * The stream's key, which is also the channel its events are published on.
   * The reply id is the hash tag: a reply's keys share one Redis Cluster slot.
   */
  key(replyId: string): string {
    return `${this.#prefix}:reply-events:{${replyId}}`;
  }

  #fenceKey(replyId: string): string {
    return `${this.#prefix}:reply-fence:{${replyId}}`;
  }

  /** Writes events (none: only claims the fence for `attempt`) in one round trip; see WRITE_SCRIPT. */
  async write(replyId: string, events: NewReplyEvent[], opts: ReplyEventWriteOptions = {}): Promise<ReplyEventWrite> {
    const args = [
      opts.attempt === undefined ? "" : String(opts.attempt),
      opts.seq === undefined ? "" : String(opts.seq),
      opts.end ? "end" : opts.seal ? "seal" : "",
      String(opts.ttlSeconds ?? this.#ttlSeconds),
      opts.renewTtl ? "1" : "",
      opts.resync ? "1" : "",
    ];
    for (const e of events) args.push(e.event, e.event === "done" ? "[DONE]" : JSON.stringify(e.data));
    const [status, ...ids] = await this.#redis.writeReplyEvents(this.key(replyId), this.#fenceKey(replyId), ...args);
    if (status === "ok") return { status, ids: ids.map(String) };
    return { status: status as "written" | "ended" | "superseded" | "lost" };
  }

  /**
   * Appends (and publishes) events in one round trip and (re)sets the
   * retention, so a stream is never left without a TTL, however its writer
   * dies. Returns their ids; none when the stream has already ended.
   */
  async append(replyId: string, events: NewReplyEvent[], ttlSeconds = this.#ttlSeconds): Promise<string[]> {
    const written = await this.write(replyId, events, { ttlSeconds, renewTtl: true });
    return written.status === "ok" ? written.ids : [];
  }

  /**
   * Writes a reply's end (its terminal event and `done`) unless the stream
   * has already ended (or, with `attempt`, a newer attempt writes it): a
   * reply's stream ends once, and nothing is written after its end.
   */
  async end(
    replyId: string,
    events: NewReplyEvent[],
    opts: Omit<ReplyEventWriteOptions, "end" | "renewTtl"> = {},
  ): Promise<ReplyEventWrite> {
    return this.write(replyId, events, { ...opts, end: true, renewTtl: true });
  }

  /**
   * Seals a reply's stream that is about to be ended by someone other than
   * its run (a cancel): its run's deltas are refused from now on, so the
   * content the stream holds after this is final and can be stored as it is.
   * An end is still taken (the run's own, should it have stored its end first).
   */
  async seal(replyId: string): Promise<void> {
    await this.write(replyId, [], { seal: true });
  }

  /** Appends one delta, unfenced, without renewing the TTL (set when the reply was created, renewed at its end). */
  async appendDelta(replyId: string, data: unknown): Promise<string> {
    const written = await this.write(replyId, [{ event: "message.delta", data }]);
    return written.status === "ok" ? (written.ids[0] ?? "") : "";
  }

  #aliveKey(replyId: string): string {
    return `${this.#prefix}:reply-alive:{${replyId}}`;
  }

  /**
   * Marks the reply as being generated by a live run, for `ttlMs`. Its run
   * renews the mark well within that, so the lost-reply sweep can tell a run
   * that goes on after Redis lost its job (restarted empty) from a reply
   * nobody generates any more.
   */
  async markAlive(replyId: string, ttlMs: number): Promise<void> {
    await this.#redis.set(this.#aliveKey(replyId), "1", "PX", ttlMs);
  }

  /** Whether a live run has marked the reply within its mark's TTL. */
  async isAlive(replyId: string): Promise<boolean> {
    return (await this.#redis.exists(this.#aliveKey(replyId))) === 1;
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
export async function lastEventName(redis: RedisClient, key: string): Promise<string | null> {
  const [entry] = (await redis.xrevrange(key, "+", "-", "COUNT", 1)) as [string, string[]][];
  return entry ? parseEntry(entry[0], entry[1]).event : null;
}

export async function readStreamAfter(redis: RedisClient, key: string, afterId: string | null): Promise<ReplyEvent[]> {
  const entries = (await redis.xrange(key, afterId ? `(${afterId}` : "-", "+")) as [string, string[]][];
  return entries.map(([id, fields]) => parseEntry(id, fields));
}
