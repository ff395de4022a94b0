import { EventSourceParserStream } from "eventsource-parser/stream";
import type { FloorLoadSpec } from "./floor.ts";
import { overTime, percentiles, summarize, type Summary, type TimeBin } from "./stats.ts";

/**
 * The load generator, run as a process of its own so its CPU is not Parley's:
 * `node bench/lib/load-client.ts '<json spec>'` prints one JSON result line.
 */

export type LoadSpec =
  | { kind: "ttft"; target: "parley" | "direct"; urls: string[]; model: string; conversations?: string[]; concurrency: number; requests: number; deadlineMs: number }
  | { kind: "turns"; urls: string[]; conversations: string[]; requests: number; deadlineMs: number }
  | { kind: "streams"; urls: string[]; conversations: string[]; tokens: number; deadlineMs: number }
  | { kind: "stateless"; urls: string[]; headers: Record<string, string>; model: string; stream: boolean; concurrency: number; requests: number; deadlineMs: number }
  | ({ kind: "floor" } & FloorLoadSpec);

export interface LoadResult {
  completed: number;
  failed: number;
  errors: string[];
  seconds: number;
  perSecond: number;
  latencyMs: Summary;
  /** The latencies as percentiles p0…p100, for the charts. */
  distributionMs: number[];
  /** Streams only: upstream send → client receive, per token. */
  lagMs?: Summary;
  /** Streams only: the lag per 250 ms of the run (from each token's receipt time), for the lag-over-time chart. */
  lagOverTime?: TimeBin[];
  /** Streams only: replies whose content arrived whole and in order. */
  correct?: number;
  /** Streams that got `message.reset` (their reply was taken over by another run and started again). */
  resets?: number;
  /** The load process's own CPU (user + system) over the run: the machine's share that is not Parley's. */
  cpuSeconds?: number;
}

const now = () => performance.timeOrigin + performance.now();

/** Runs `task` `total` times, `concurrency` at once, stopping new ones after the deadline. */
async function pool(concurrency: number, total: number, deadline: number, task: (i: number, lane: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async (_, lane) => {
      while (next < total && now() < deadline) await task(next++, lane);
    }),
  );
}

async function* sse(res: Response) {
  if (!res.body) return;
  yield* res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
}

// The key run.ts made for this run (PARLEY_API_KEY); a peer's spec brings its own headers.
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${process.env.PARLEY_API_KEY}`, ...headers },
    body: JSON.stringify(body),
  });

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  if (spec.kind === "floor") {
    const { runFloorLoad } = await import("./floor.ts");
    const floor = await runFloorLoad(spec);
    return { ...floor, perSecond: floor.completed / floor.seconds };
  }
  const latencies: number[] = [];
  const lags: number[] = [];
  // [received at, ms since the load began; lag]
  const lagSamples: [number, number][] = [];
  const errors: string[] = [];
  let failed = 0;
  let correct = 0;
  let resets = 0;
  const started = now();
  const deadline = started + spec.deadlineMs;
  const urlFor = (lane: number) => spec.urls[lane % spec.urls.length]!;
  const fail = (msg: string) => {
    failed++;
    if (errors.length < 5) errors.push(msg);
  };

  if (spec.kind === "ttft") {
    await pool(spec.concurrency, spec.requests, deadline, async (_i, lane) => {
      const t0 = now();
      const res =
        spec.target === "parley"
          ? await post(`${urlFor(lane)}/conversations/${spec.conversations![lane]}/messages`, { content: "How far is it?", stream: true })
          : await post(`${urlFor(lane)}/chat/completions`, { model: spec.model, messages: [{ role: "user", content: "How far is it?" }], stream: true });
      if (res.status !== 200) return fail(`status ${res.status}: ${(await res.text()).slice(0, 200)}`);
      let first: number | null = null;
      for await (const e of sse(res)) {
        if (first === null && (spec.target === "parley" ? e.event === "message.delta" : e.data.includes('"content":"') && !e.data.includes('"content":""'))) first = now();
        if (e.event === "message.failed") fail(`failed: ${e.data.slice(0, 200)}`);
      }
      if (first === null) return fail("no token");
      latencies.push(first - t0);
    });
  } else if (spec.kind === "turns") {
    await pool(spec.conversations.length, spec.requests, deadline, async (_i, lane) => {
      const t0 = now();
      const res = await post(`${urlFor(lane)}/conversations/${spec.conversations[lane]}/messages`, { content: "Next stop?" });
      const body = (await res.json()) as { reply?: { status: string } };
      if (res.status !== 201 || body.reply?.status !== "completed") return fail(`status ${res.status}: ${JSON.stringify(body).slice(0, 200)}`);
      latencies.push(now() - t0);
    });
  } else if (spec.kind === "streams") {
    await Promise.all(
      spec.conversations.map(async (id, lane) => {
        const t0 = now();
        try {
          const res = await post(`${urlFor(lane)}/conversations/${id}/messages`, { content: "Stream it", stream: true });
          if (res.status !== 200) return fail(`status ${res.status}`);
          const seen: string[] = [];
          let final = "";
          for await (const e of sse(res)) {
            if (e.event === "message.delta") {
              const content = (JSON.parse(e.data) as { delta: { content: string } }).delta.content;
              const at = content.lastIndexOf("@");
              const received = now();
              const lag = received - Number(content.slice(at + 1));
              lags.push(lag);
              lagSamples.push([received - started, lag]);
              seen.push(content);
            } else if (e.event === "message.reset") {
              // The reply starts over (another run took it): what came before is dropped, as a client must.
              seen.length = 0;
              resets++;
            } else if (e.event === "message.completed") {
              final = (JSON.parse(e.data) as { content: string }).content;
            } else if (e.event === "message.failed") {
              fail(`failed: ${e.data.slice(0, 200)}`);
            }
          }
          const inOrder = seen.length === spec.tokens && seen.every((c, i) => c.startsWith(` w${i}@`));
          if (inOrder && final === seen.join("")) correct++;
          else fail(`wrong content: ${seen.length} deltas`);
          latencies.push(now() - t0);
        } catch (err) {
          fail(String(err));
        }
      }),
    );
  } else {
    await pool(spec.concurrency, spec.requests, deadline, async (_i, lane) => {
      const t0 = now();
      try {
        const res = await post(`${urlFor(lane)}/chat/completions`, { model: spec.model, messages: [{ role: "user", content: "Hello" }], stream: spec.stream }, spec.headers);
        if (res.status !== 200) return fail(`status ${res.status}: ${(await res.text()).slice(0, 300)}`);
        if (spec.stream) {
          let text = "";
          for await (const e of sse(res)) {
            if (e.data === "[DONE]") break;
            const chunk = JSON.parse(e.data) as { choices?: { delta?: { content?: string } }[]; error?: unknown };
            if (chunk.error) return fail(`error chunk: ${e.data.slice(0, 200)}`);
            text += chunk.choices?.[0]?.delta?.content ?? "";
          }
          if (!text) return fail("empty stream");
        } else {
          const body = (await res.json()) as { choices?: { message?: { content?: string } }[] };
          if (!body.choices?.[0]?.message?.content) return fail(`no content: ${JSON.stringify(body).slice(0, 200)}`);
        }
        latencies.push(now() - t0);
      } catch (err) {
        fail(String(err));
      }
    });
  }

  const seconds = (now() - started) / 1000;
  return {
    completed: latencies.length,
    failed,
    errors,
    seconds,
    perSecond: latencies.length / seconds,
    latencyMs: summarize(latencies),
    distributionMs: percentiles(latencies),
    ...(spec.kind === "streams" ? { lagMs: summarize(lags), lagOverTime: overTime(lagSamples, 250), correct, resets } : {}),
  };
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? "{}") as LoadSpec;
  const before = process.cpuUsage();
  const result = await runLoad(spec);
  const { user, system } = process.cpuUsage(before);
  console.log(JSON.stringify({ ...result, cpuSeconds: (user + system) / 1e6 }));
}
