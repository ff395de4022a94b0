import { expect } from "vitest";
import { conversations, endOf, eventually, followReply, question, request, scenario, sleep, streamTurn, waitForReplies } from "./harness.ts";

/**
 * Issue 12 item 3: a conversation deleted while its reply streams. Done means
 * the streaming caller, a follower on the events endpoint and a wait:true
 * caller (on a second conversation) all end, followers with an end event, and
 * the upstream calls are aborted rather than run to the end.
 */
scenario("3 delete mid-reply: streaming follower and wait:true caller end; upstream call aborted", { timeoutMs: 120_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100 }); // ~30 s replies: far longer than any bound below
  const api = await c.start("api");
  await c.start("worker");
  const bound = 20_000;
  const [streamedConv, waitedConv] = await conversations(api.api, 2);

  const streamed = streamTurn(api.url, streamedConv!, question(0, 300), bound);
  const waited = request(api.url, "POST", `/conversations/${waitedConv}/messages`, { content: question(1, 300) }, bound);
  const rows = await waitForReplies(c, 2);
  const streamedReply = [...rows.values()].find((r) => r.conversation_id === streamedConv)!;
  const follower = followReply(api.url, streamedConv!, streamedReply.id, bound);
  await eventually("both model calls started", 20_000, async () => (c.upstream.requests.length >= 2 ? true : null));
  await sleep(1000);

  const deletes = await Promise.all([streamedConv, waitedConv].map((id) => request(api.url, "DELETE", `/conversations/${id}`, undefined, 10_000)));
  expect(deletes.map((d) => d.status)).toEqual([200, 200]);
  const [s, f, w] = await Promise.all([streamed, follower, waited]);
  await sleep(2000);
  const aborted = c.upstream.requests.map((r) => r.closedEarly);
  c.note(
    `streaming caller: ${s.ended ? `ended with ${endOf(s)?.event}` : s.error}; follower: ${f.ended ? `ended with ${endOf(f)?.event}` : f.error}; ` +
      `wait:true caller: ${w.status ?? w.error}; upstream calls aborted: ${aborted.join(", ")}`,
  );

  expect({ ended: s.ended, end: endOf(s)?.event ?? null }).toMatchObject({ ended: true, end: expect.any(String) });
  expect({ ended: f.ended, end: endOf(f)?.event ?? null }).toMatchObject({ ended: true, end: expect.any(String) });
  expect(w.status, w.error).not.toBeNull();
  expect(w.status).toBeLessThan(500);
  expect(aborted).toEqual([true, true]);
});
