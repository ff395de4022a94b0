import { expect } from "vitest";
import { conversations, countBy, endOf, eventually, question, receivedContent, replyIdOf, replyRows, scenario, sleep, streamTurn } from "./harness.ts";

/**
 * Issue 12 item 10: a 2 s Redis blip (own server killed with -9, restarted
 * empty) with 30 replies in flight. Done means they complete (not
 * internal_error), and what each follower was sent is what is stored.
 */
scenario("10 redis blip: 30 in-flight replies complete, stored content = streamed deltas", { timeoutMs: 150_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100 });
  const api = await c.start("api");
  await c.start("worker");
  const n = 30;
  const bound = 60_000;

  const convs = await conversations(api.api, n);
  // 3 to 5 s replies: every one is mid-stream when Redis goes.
  const streams = convs.map((id, i) => streamTurn(api.url, id, question(i, 28 + (i % 3) * 10), bound));
  await eventually("every reply's model call started", 30_000, async () => (c.upstream.requests.length >= n ? true : null));
  await sleep(500);

  await c.redis.kill();
  await sleep(2000);
  await c.redis.start();

  const followed = await Promise.all(streams);
  const stored = await replyRows(c);
  const problems: string[] = [];
  for (const [i, f] of followed.entries()) {
    const id = replyIdOf(f);
    const row = id ? stored.get(id) : undefined;
    if (!row) {
      problems.push(`reply ${i}: no reply in the stream (${f.status}, ${f.error ?? ""})`);
      continue;
    }
    if (row.status !== "completed") problems.push(`reply ${i}: stored ${row.status} ${row.error?.code ?? ""}`);
    if (!f.ended || !endOf(f)) problems.push(`reply ${i}: the stream did not end with an end event (${f.error ?? "ended without one"})`);
    const received = receivedContent(f);
    if (received !== row.content) {
      problems.push(`reply ${i}: streamed ${received.length} chars, stored ${row.content.length} (${received.length > row.content.length ? "more" : "less"} streamed)`);
    }
  }
  c.note(`replies stored ${countBy([...stored.values()].map((r) => r.error?.code ?? r.status))}`);
  expect(problems).toEqual([]);
});
