import { expect } from "vitest";
import { callsFor, conversations, countBy, endOf, eventually, question, receivedContent, replyIdOf, replyRows, scenario, sleep, streamFaults, streamTurn } from "./harness.ts";

/** Two calls overlapping by more than this generated one reply twice at once (less is the handover itself). */
const OVERLAP_MS = 250;

/**
 * Issue 12 item 11: a 20 s Redis partition (black-hole proxy) cuts the worker
 * that holds 30 replies off from Redis while another worker can reach it. The
 * cut-off worker's locks lapse and the other worker's stalled check takes the
 * jobs during the partition. Done means no reply is generated twice at once
 * (the fake upstream's calls per reply do not overlap) and no follower gets
 * duplicated deltas (what it was sent equals what is stored), also after the
 * partition heals and whatever the cut-off worker held back is delivered.
 */
scenario("11 redis partition 20 s: no reply generated twice at once, no duplicated deltas", { timeoutMs: 170_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 200 });
  const locks = { WORKER_LOCK_MS: "2000", WORKER_STALLED_CHECK_MS: "1000", LOST_REPLY_SWEEP_MS: "2000", LOST_REPLY_GRACE_MS: "20000" };
  const api = await c.start("api");
  const cutOff = await c.start("worker", { via: { redis: true }, env: locks });
  const n = 30;
  const bound = 120_000;

  const convs = await conversations(api.api, n);
  const contents = convs.map((_, i) => question(i, 40)); // ~8 s replies
  const streams = convs.map((id, i) => streamTurn(api.url, id, contents[i]!, bound));
  await eventually("the cut-off worker has every reply's model call open", 30_000, async () => (c.upstream.requests.length >= n ? true : null));
  // The worker that stays connected, started once the first holds every job.
  await c.start("worker", { env: locks });

  await sleep(500);
  c.redisProxy.blackhole();
  await sleep(20_000);
  c.redisProxy.heal();

  const followed = await Promise.all(streams);
  // Let whatever the healed worker held back land before reading what was stored and sent.
  await sleep(3000);
  const stored = await replyRows(c);
  const problems: string[] = [];
  let twiceAtOnce = 0;
  const overlaps: number[] = [];
  let generatedTwice = 0;
  for (const [i, f] of followed.entries()) {
    const calls = callsFor(c, contents[i]!);
    if (calls.length > 1) generatedTwice++;
    const overlap = Math.max(
      0,
      ...calls.flatMap((a, j) =>
        calls.slice(j + 1).map((b) => Math.min(a.endedAt ?? Date.now(), b.endedAt ?? Date.now()) - Math.max(a.startedAt, b.startedAt)),
      ),
    );
    if (overlap > OVERLAP_MS) {
      twiceAtOnce++;
      overlaps.push(overlap);
      problems.push(`reply ${i}: ${calls.length} upstream calls, overlapping for ${overlap} ms`);
    }
    const id = replyIdOf(f);
    const row = id ? stored.get(id) : undefined;
    if (!row) {
      problems.push(`reply ${i}: no reply in the stream (${f.status}, ${f.error ?? ""})`);
      continue;
    }
    if (!f.ended || !endOf(f)) problems.push(`reply ${i}: the stream did not end with an end event (${f.error ?? "ended without one"})`);
    const received = receivedContent(f);
    if (received !== row.content) problems.push(`reply ${i}: streamed ${received.length} chars, stored ${row.content.length} (${row.status})`);
    for (const fault of streamFaults(await c.streamedEvents(row.id))) problems.push(`reply ${i}: its event stream has ${fault}`);
  }
  c.note(
    `${generatedTwice} of ${n} replies called the upstream more than once, ${twiceAtOnce} with calls overlapping ` +
      `(${overlaps.length ? `${Math.min(...overlaps)}–${Math.max(...overlaps)} ms` : "-"}); ` +
      `stored ${countBy([...stored.values()].map((r) => r.error?.code ?? r.status))}; cut-off worker exit: ${cutOff.child.exitCode ?? "running"}`,
  );
  expect(problems).toEqual([]);
});
