import { expect } from "vitest";
import { callsFor, conversations, endOf, eventually, question, receivedContent, replyIdOf, replyRows, scenario, sleep, streamTurn } from "./harness.ts";

const LOCK_MS = 4000;
const STALLED_CHECK_MS = 2000;
const SLACK_MS = 10_000;

/**
 * Issue 12 item 15: a worker SIGKILLed with 30 replies in flight. Done means
 * every reply ends completed on the other worker; each follower that had
 * deltas from the dead worker got message.reset; the new run starts within
 * WORKER_LOCK_MS + WORKER_STALLED_CHECK_MS (+ slack). The figures (replies
 * generated twice, time to end) go in the run's report.
 */
scenario("15 worker SIGKILLed: every reply completes on the other worker within the window, followers reset", { timeoutMs: 150_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 150 }); // ~4.5 s replies
  const env = { WORKER_LOCK_MS: String(LOCK_MS), WORKER_STALLED_CHECK_MS: String(STALLED_CHECK_MS) };
  const api = await c.start("api");
  const doomed = await c.start("worker", { env });
  const n = 30;
  const bound = 90_000;

  const convs = await conversations(api.api, n);
  const contents = convs.map((_, i) => question(i, 28));
  const streams = convs.map((id, i) => streamTurn(api.url, id, contents[i]!, bound));
  await eventually("the first worker has every reply's model call open", 30_000, async () => (c.upstream.requests.length >= n ? true : null));
  await c.start("worker", { env });
  await sleep(500);
  const killedAt = Date.now();
  await doomed.kill();

  const followed = await Promise.all(streams);
  const stored = await replyRows(c);
  const problems: string[] = [];
  const resetAfter: number[] = [];
  const endedAfter: number[] = [];
  let generatedTwice = 0;
  for (const [i, f] of followed.entries()) {
    if (callsFor(c, contents[i]!).length > 1) generatedTwice++;
    const id = replyIdOf(f);
    const row = id ? stored.get(id) : undefined;
    if (!row) {
      problems.push(`reply ${i}: no reply in the stream (${f.status}, ${f.error ?? ""})`);
      continue;
    }
    if (row.status !== "completed") problems.push(`reply ${i}: stored ${row.status} ${row.error?.code ?? ""}`);
    if (!f.ended || endOf(f)?.event !== "message.completed") problems.push(`reply ${i}: the stream did not end completed (${f.error ?? endOf(f)?.event})`);
    if (receivedContent(f) !== row.content) problems.push(`reply ${i}: streamed content differs from stored`);
    const hadDeltasBefore = f.events.some((e) => e.event === "message.delta" && e.at < killedAt);
    const reset = f.events.find((e) => e.event === "message.reset");
    if (reset) resetAfter.push(reset.at - killedAt);
    else if (hadDeltasBefore && callsFor(c, contents[i]!).length > 1) problems.push(`reply ${i}: regenerated without message.reset`);
    if (reset && reset.at - killedAt > LOCK_MS + STALLED_CHECK_MS + SLACK_MS) {
      problems.push(`reply ${i}: restarted ${reset.at - killedAt} ms after the kill (window ${LOCK_MS + STALLED_CHECK_MS} ms + slack)`);
    }
    if (f.endedAt) endedAfter.push(f.endedAt - killedAt);
  }
  const s = (ms: number[]) => (ms.length ? `${(Math.min(...ms) / 1000).toFixed(1)}–${(Math.max(...ms) / 1000).toFixed(1)} s` : "-");
  c.note(
    `${generatedTwice} of ${n} replies generated twice; message.reset ${s(resetAfter)} after the kill; streams ended ${s(endedAfter)} after it ` +
      `(WORKER_LOCK_MS ${LOCK_MS} + WORKER_STALLED_CHECK_MS ${STALLED_CHECK_MS})`,
  );
  expect(problems).toEqual([]);
});
