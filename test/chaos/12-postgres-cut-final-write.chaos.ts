import { expect } from "vitest";
import { conversations, countBy, eventually, question, replyRows, request, scenario, sleep } from "./harness.ts";

/**
 * Issue 12 item 12: Postgres cut for 5 s (proxy cut, then restored) while 30
 * replies are generating, timed so that many finish during the cut. Done
 * means all end completed with their full content; none failed reply_lost.
 */
scenario("12 postgres cut 5 s: replies finishing during the cut end completed with full content", { timeoutMs: 150_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100 });
  // The sweep runs often and soon, as it would after a longer outage: it must not fail replies whose write is being retried.
  const env = { LOST_REPLY_SWEEP_MS: "1000", LOST_REPLY_GRACE_MS: "4000" };
  const api = await c.start("api", { via: { pg: true }, env });
  await c.start("worker", { via: { pg: true }, env });
  const n = 30;

  const convs = await conversations(api.api, n);
  // Replies of 2.5 to 8 s: the cut below (from ~2 s to ~7 s) catches most of them finishing.
  const contents = convs.map((_, i) => question(i, 23 + Math.round((i * 55) / n)));
  const accepted = await Promise.all(
    convs.map((id, i) => request(api.url, "POST", `/conversations/${id}/messages`, { content: contents[i], wait: false }, 30_000)),
  );
  expect(accepted.map((a) => a.status)).toEqual(convs.map(() => 202));
  await eventually("every reply's model call started", 30_000, async () => (c.upstream.requests.length >= n ? true : null));

  await sleep(1500);
  await c.pgProxy.cut();
  await sleep(5000);
  await c.pgProxy.restore();

  const rows = await eventually("every reply ended", 60_000, async () => {
    const r = await replyRows(c);
    return [...r.values()].every((row) => !["queued", "in_progress"].includes(row.status)) ? r : null;
  }).catch(async () => replyRows(c));
  const problems: string[] = [];
  for (const [i, a] of accepted.entries()) {
    const row = rows.get(a.body?.reply?.id);
    const expected = c.upstream.replyTextFor(contents[i]!);
    if (!row) problems.push(`reply ${i}: not stored`);
    else if (row.status !== "completed") problems.push(`reply ${i}: ${row.status} ${row.error?.code ?? ""}`);
    else if (row.content !== expected) problems.push(`reply ${i}: stored ${row.content.length} of ${expected.length} chars`);
  }
  c.note(`replies stored ${countBy([...rows.values()].map((r) => r.error?.code ?? r.status))}`);
  expect(problems).toEqual([]);
});
