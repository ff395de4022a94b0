import { expect } from "vitest";
import { conversations, countBy, endOf, eventually, followReply, question, replyRows, request, scenario, sleep, streamTurn, tally, waitForReplies } from "./harness.ts";

/**
 * Issue 12 item 9: a Redis restart (2 s, empty) with streaming followers and
 * wait:true callers in flight. Done means every follower and caller ends
 * (within 45 s), and what it ends with is the reply's stored final state.
 */
scenario("9 redis restart: every follower and wait:true caller ends with the stored state", { timeoutMs: 150_000 }, async (c) => {
  // ~4 s replies, streaming through the outage.
  c.upstream.setBehaviour({ kind: "ok", replyTokens: 80, tokenDelayMs: 50 });
  const api = await c.start("api");
  // Job locks shorter than the outage (as 10 s locks are to a longer one), and a quick lost-reply sweep.
  await c.start("worker", { env: { WORKER_LOCK_MS: "1500", WORKER_STALLED_CHECK_MS: "500", LOST_REPLY_SWEEP_MS: "300", LOST_REPLY_GRACE_MS: "1000" } });
  const bound = 45_000;
  const n = 12;

  const streamed = await conversations(api.api, n);
  const waited = await conversations(api.api, n);
  const streams = streamed.map((id, i) => streamTurn(api.url, id, question(i, 8), bound));
  const callers = waited.map((id, i) => request(api.url, "POST", `/conversations/${id}/messages`, { content: question(100 + i, 8) }, bound));
  // A second follower per streamed reply, from the events endpoint.
  const rows = await waitForReplies(c, 2 * n);
  const followers = streamed.map((conv) => {
    const row = [...rows.values()].find((r) => r.conversation_id === conv)!;
    return followReply(api.url, conv, row.id, bound);
  });
  await eventually("every reply's model call started", 30_000, async () => (c.upstream.requests.length >= 2 * n ? true : null));
  await sleep(500);

  await c.redis.kill();
  await sleep(2000);
  await c.redis.start();

  const [s, f, w] = await Promise.all([Promise.all(streams), Promise.all(followers), Promise.all(callers)]);
  const stored = await replyRows(c);
  const problems: string[] = [];
  for (const [i, followed] of [...s.map((x) => ["stream", x] as const), ...f.map((x) => ["follower", x] as const)].entries()) {
    const [kind, x] = followed;
    const end = endOf(x);
    if (!x.ended) problems.push(`${kind} ${i}: not ended within ${bound} ms (${x.error ?? ""}, ${x.events.length} events)`);
    else if (!end) problems.push(`${kind} ${i}: ended without an end event (last: ${x.events.at(-1)?.event})`);
    else {
      const row = stored.get(end.data.id);
      if (row?.status !== end.data.status) problems.push(`${kind} ${i}: ended ${end.data.status}, stored ${row?.status}`);
    }
  }
  for (const [i, a] of w.entries()) {
    if (a.status === null) problems.push(`caller ${i}: ${a.error}`);
    else if (a.status === 201) {
      const row = stored.get(a.body.reply.id);
      if (row?.status !== a.body.reply.status) problems.push(`caller ${i}: answered ${a.body.reply.status}, stored ${row?.status}`);
    } else problems.push(`caller ${i}: ${a.status} ${JSON.stringify(a.body)}`);
  }
  c.note(`replies stored ${countBy([...stored.values()].map((r) => r.error?.code ?? r.status))}; callers answered ${tally(w)}`);
  expect(problems).toEqual([]);
});
