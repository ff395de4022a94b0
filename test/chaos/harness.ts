import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { Redis } from "ioredis";
import { it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, followedContent } from "../support/http.ts";
import { seedTestApiKey, TEST_API_KEY } from "../support/keys.ts";
import { freePort, spawnParley, waitForOutput, type ParleyProcess } from "../support/processes.ts";
import { startOwnRedis, type OwnRedis } from "../support/redis-server.ts";
import { createTestDatabase, type TestDatabase } from "../support/service.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { eventually as waitFor, sleep } from "../support/waiting.ts";
import { CHAOS_SECRET, chaosLogDir } from "./secret.ts";

/**
 * One chaos scenario's world: a database of its own on the shared Postgres, a
 * redis-server of its own, TCP proxies in front of both (a process uses them
 * only when told), a fake upstream whose API key is the secret, and Parley
 * processes spawned as `npm start` runs them. Everything is torn down when the
 * scenario ends, passed or not, and every process's output is written to the
 * log directory for the runner's secret check.
 */
export interface Chaos {
  name: string;
  database: TestDatabase;
  redis: OwnRedis;
  /** Between Parley and the scenario's Postgres database. */
  pgProxy: TcpProxy;
  /** Between Parley and the scenario's own redis-server. */
  redisProxy: TcpProxy;
  upstream: FakeUpstream;
  /** Spawns a Parley process and waits until it is ready; `via` routes its Postgres and/or Redis through the proxies. */
  start(role: "api" | "worker" | "all", opts?: { via?: { pg?: boolean; redis?: boolean }; env?: Record<string, string> }): Promise<Parley>;
  /** A line for the run's report (figures a scenario measured). */
  note(text: string): void;
  /** Every spawned process's output so far, by process name. */
  outputs(): Record<string, string>;
  /**
   * A reply's event stream as Redis holds it (event names in order), read
   * straight from the scenario's redis-server: what a replay over the API
   * might hide, such as an event written after `done`.
   */
  streamedEvents(replyId: string): Promise<string[]>;
}

export interface Parley extends ParleyProcess {
  name: string;
  /** `http://127.0.0.1:<port>/v1` for an API. */
  url: string;
  api: ReturnType<typeof apiClient>;
  /** SIGKILL; resolves once it has exited. */
  kill(): Promise<void>;
}

/** The settings every scenario's processes run with (fast pacing, limits out of the way of bursts). */
const baseEnv = {
  SIMULATOR_TTFT_MS: "0",
  SIMULATOR_TOKENS_PER_SECOND: "1000",
  SSE_HEARTBEAT_MS: "1000",
  SHUTDOWN_TIMEOUT_MS: "2000",
  UPSTREAM_RETRY_BASE_MS: "50",
  UPSTREAM_RETRY_MAX_MS: "2000",
  MAX_CONCURRENT_REPLIES: "500",
  RATE_LIMIT_REQUESTS: "100000",
  LOG_LEVEL: "info",
};

/** A scenario as one vitest test: `body` gets a fresh world, torn down afterwards whatever happens. */
export function scenario(
  name: string,
  opts: { timeoutMs: number; env?: Record<string, string> },
  body: (c: Chaos) => Promise<void>,
) {
  it(name, async () => {
    const world = await createWorld(name, opts.env ?? {});
    try {
      await body(world.chaos);
    } finally {
      await world.close();
    }
  }, opts.timeoutMs);
}

async function createWorld(name: string, scenarioEnv: Record<string, string>) {
  const slug = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase().slice(0, 60);
  const logDir = chaosLogDir();
  mkdirSync(logDir, { recursive: true });
  const processes: Parley[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  const killAll = () => {
    for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
  };
  process.once("exit", killAll);

  try {
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    const redis = await startOwnRedis();
    cleanups.push(() => redis.kill());
    const direct = new URL(database.url);
    const pgProxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
    cleanups.push(() => pgProxy.close());
    const redisProxy = await startTcpProxy({ host: "127.0.0.1", port: redis.port });
    cleanups.push(() => redisProxy.close());
    const upstream = await startFakeUpstream();
    cleanups.push(() => upstream.close());

    const pgViaProxy = Object.assign(new URL(database.url), { hostname: "127.0.0.1", port: String(pgProxy.port) }).toString();
    const redisViaProxy = `redis://127.0.0.1:${redisProxy.port}`;
    const prefix = `parley-chaos-${randomBytes(4).toString("hex")}`;
    let seeded = false;
    const counts: Record<string, number> = {};

    const chaos: Chaos = {
      name,
      database,
      redis,
      pgProxy,
      redisProxy,
      upstream,
      async start(role, o = {}) {
        counts[role] = (counts[role] ?? 0) + 1;
        const procName = `${role}${counts[role]}`;
        const port = await freePort();
        const env = {
          ...baseEnv,
          UPSTREAMS: JSON.stringify([{ name: "fake", base_url: upstream.baseURL, api_key: CHAOS_SECRET, models: ["fake-model"] }]),
          ...scenarioEnv,
          ...o.env,
          DATABASE_URL: o.via?.pg ? pgViaProxy : database.url,
          REDIS_URL: o.via?.redis ? redisViaProxy : redis.url,
          REDIS_PREFIX: prefix,
          HOST: "127.0.0.1",
          PORT: String(port),
          ROLE: role,
        };
        const p = spawnParley(env);
        const url = `http://127.0.0.1:${port}/v1`;
        const parley: Parley = {
          ...p,
          name: procName,
          url,
          api: apiClient(url),
          async kill() {
            if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
            await p.exited;
          },
        };
        processes.push(parley);
        if (role !== "worker") await waitForOutput(p, "api listening", 60_000);
        if (role !== "api") await waitForOutput(p, "worker started", 60_000);
        if (!seeded) {
          await seedTestApiKey(database.sql);
          seeded = true;
        }
        return parley;
      },
      note(text) {
        appendFileSync(join(logDir, "notes.txt"), `${name}: ${text}\n`);
      },
      outputs: () => Object.fromEntries(processes.map((p) => [p.name, p.output()])),
      async streamedEvents(replyId) {
        const redisClient = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          await redisClient.connect();
          const [key] = await redisClient.keys(`${prefix}:reply-events:*${replyId}*`);
          if (!key) return [];
          const entries = await redisClient.xrange(key, "-", "+");
          return entries.map(([, fields]) => fields[fields.indexOf("event") + 1] ?? "?");
        } finally {
          redisClient.disconnect();
        }
      },
    };

    return {
      chaos,
      async close() {
        killAll();
        await Promise.all(processes.map((p) => p.exited));
        for (const p of processes) writeFileSync(join(logDir, `${slug}--${p.name}.log`), p.output());
        await runCleanups(cleanups);
      },
    };
  } catch (err) {
    killAll();
    await runCleanups(cleanups);
    throw err;
  }
}

async function runCleanups(cleanups: (() => Promise<unknown>)[]) {
  for (const c of cleanups.reverse()) await c().catch(() => {});
}

export { sleep };

/** test/support/waiting.ts's `eventually`, kept in the (what, bound, probe) order the scenarios call it with. */
export const eventually = <T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined | false>): Promise<T> =>
  waitFor(probe, { what, timeoutMs });

export interface Event {
  id: string | undefined;
  event: string | undefined;
  data: string;
  at: number;
}

/** What a follower (an SSE reader) saw: its events, and whether its stream ended by itself within the bound. */
export interface Followed {
  status: number | null;
  events: Event[];
  /** The server closed the stream (false: still open when the bound ran out, or the request failed). */
  ended: boolean;
  endedAt: number | null;
  error?: string;
}

export const END_EVENTS = ["message.completed", "message.failed", "message.cancelled"];

/**
 * Reads an SSE answer to the end, or until `boundMs` runs out (then `ended`
 * is false). `init` is a fetch request (a streamed append or an events GET).
 */
export async function follow(url: string, init: RequestInit, boundMs: number): Promise<Followed> {
  const signal = AbortSignal.timeout(boundMs);
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${TEST_API_KEY}`);
  const out: Followed = { status: null, events: [], ended: false, endedAt: null };
  try {
    const res = await fetch(url, { ...init, headers, signal });
    out.status = res.status;
    if (!res.body) return { ...out, ended: true, endedAt: Date.now() };
    const stream = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    for await (const e of stream) out.events.push({ id: e.id, event: e.event, data: e.data, at: Date.now() });
    out.ended = true;
    out.endedAt = Date.now();
  } catch (err) {
    out.error = (err as Error).name === "TimeoutError" ? "still open at the bound" : String(err);
  }
  return out;
}

/** Follows a reply's events from the start (or after `lastEventId`). */
export function followReply(apiUrl: string, conversationId: string, replyId: string, boundMs: number, lastEventId?: string) {
  return follow(
    `${apiUrl}/conversations/${conversationId}/messages/${replyId}/events`,
    { headers: lastEventId ? { "last-event-id": lastEventId } : {} },
    boundMs,
  );
}

/** Appends `content` with `stream: true`: the caller is a follower of its reply. */
export function streamTurn(apiUrl: string, conversationId: string, content: string, boundMs: number, headers: Record<string, string> = {}) {
  return follow(
    `${apiUrl}/conversations/${conversationId}/messages`,
    { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ content, stream: true }) },
    boundMs,
  );
}

/** The reply's id from a streamed turn (its second `message.created`). */
export function replyIdOf(f: Followed): string | undefined {
  const created = f.events.filter((e) => e.event === "message.created").map((e) => JSON.parse(e.data));
  return created.find((m) => m.role === "assistant")?.id;
}

/** The content a follower was sent: the deltas after the last `message.reset` (if any). */
export function receivedContent(f: Followed): string {
  return followedContent(f.events);
}

/** The follower's end event (completed/failed/cancelled), parsed, if it got one. */
export function endOf(f: Followed): { event: string; data: any } | undefined {
  const e = f.events.find((x) => END_EVENTS.includes(x.event ?? ""));
  return e ? { event: e.event!, data: JSON.parse(e.data) } : undefined;
}

export interface Answer {
  /** null: no answer within the bound (or the connection failed: see `error`). */
  status: number | null;
  headers: Headers | null;
  body: any;
  ms: number;
  error?: string;
}

/** A JSON request with a bound: how it was answered and how long it took. */
export async function request(
  apiUrl: string,
  method: string,
  path: string,
  body: unknown,
  boundMs: number,
  headers: Record<string, string> = {},
  apiKey = TEST_API_KEY,
): Promise<Answer> {
  const started = Date.now();
  try {
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(boundMs),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, headers: res.headers, body: json, ms: Date.now() - started };
  } catch (err) {
    const error = (err as Error).name === "TimeoutError" ? `no answer within ${boundMs} ms` : String((err as Error).cause ?? err);
    return { status: null, headers: null, body: null, ms: Date.now() - started, error };
  }
}

/** A tally like `201×3, 409×197` of answers' statuses (and error codes), for messages. */
export function tally(answers: Answer[]): string {
  const counts = new Map<string, number>();
  for (const a of answers) {
    const k = a.status === null ? "none" : `${a.status}${a.body?.error?.code ? ` ${a.body.error.code}` : ""}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k}×${n}`).join(", ");
}

/** `n` conversations on the fake model. */
export async function conversations(api: ReturnType<typeof apiClient>, n: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const res = await api.post("/conversations", { model: "fake-model" });
      if (res.status !== 201) throw new Error(`create conversation: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.id as string;
    }),
  );
}

/** The assistant rows of the scenario's database by id. */
export async function replyRows(c: Chaos) {
  const rows = await c.database.sql`select id, conversation_id, status, content, error from messages where role = 'assistant'`;
  return new Map(rows.map((r) => [r.id as string, r]));
}

/** Calls to the fake upstream per conversation, by the conversation's unique last user message. */
export function callsFor(c: Chaos, lastUser: string) {
  return c.upstream.requests.filter((r) => {
    const msgs: { role: string; content: unknown }[] = r.body.messages ?? [];
    return msgs.findLast((m) => m.role === "user")?.content === lastUser;
  });
}

/** A user message of `words` words, unique to `i`, carrying the secret (content must never be logged). */
export function question(i: number, words = 10): string {
  return [`q${i}`, CHAOS_SECRET, ...Array.from({ length: Math.max(0, words - 2) }, (_, k) => `w${k}`)].join(" ");
}

/** Waits until at least `n` replies are stored (turns were accepted); returns the rows. */
export async function waitForReplies(c: Chaos, n: number, boundMs = 30_000) {
  return eventually(`${n} replies stored`, boundMs, async () => {
    const rows = await replyRows(c);
    return rows.size >= n ? rows : null;
  });
}

/** `a×3, b×1`: how often each value occurs, for notes and messages. */
export function countBy(values: unknown[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(String(v), (counts.get(String(v)) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k}×${n}`).join(", ");
}

/** What is wrong with a reply's stored event stream: events after `done`, or not exactly one end event. */
export function streamFaults(events: string[]): string[] {
  const faults: string[] = [];
  const done = events.indexOf("done");
  if (done >= 0 && done < events.length - 1) faults.push(`${countBy(events.slice(done + 1))} after done`);
  const ends = events.filter((e) => END_EVENTS.includes(e));
  if (ends.length !== 1) faults.push(`end events: ${ends.join(", ") || "none"}`);
  return faults;
}
