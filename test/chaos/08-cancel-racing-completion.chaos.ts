import { expect } from "vitest";
import { END_EVENTS, conversations, followReply, question, replyIdOf, request, scenario, sleep, streamFaults, streamTurn } from "./harness.ts";

const ROUNDS = 20;

/**
 * Issue 12 item 8: cancel sent as the reply finishes, 20 rounds (the cancel
 * lands at a different point of the last deltas each round). Done means no
 * event is written after a reply's `done`, every reply has exactly one end
 * event, and a follower resuming at or after the end closes at once.
 */
scenario("8 cancel racing completion, 20 rounds: nothing after done; a resume after done closes at once", { timeoutMs: 150_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 20 }); // 12 tokens: ~220 ms of deltas
  const api = await c.start("api");
  await c.start("worker");
  const convs = await conversations(api.api, ROUNDS);
  const problems: string[] = [];
  let cancelledWins = 0;

  for (const [round, conv] of convs.entries()) {
    const streamed = streamTurn(api.url, conv, question(round, 10), 20_000);
    // Cancel once the reply id is known, at a point that moves through the reply's last deltas round by round.
    const replyId = await waitForReplyId(c, conv);
    await sleep(120 + round * 8);
    await request(api.url, "POST", `/conversations/${conv}/messages/${replyId}/cancel`, {}, 10_000);
    const s = await streamed;
    if (!s.ended) problems.push(`round ${round}: the streamed turn did not end (${s.error})`);
    await sleep(300); // anything written late lands now

    // The whole stream, replayed from the start: one end event, then done, then nothing.
    const all = await followReply(api.url, conv, replyIdOf(s) ?? replyId, 5_000);
    const names = all.events.map((e) => e.event);
    const done = names.indexOf("done");
    const ends = names.filter((n) => END_EVENTS.includes(n ?? ""));
    if (!all.ended) problems.push(`round ${round}: replay from the start did not close (${all.error})`);
    if (done < 0) problems.push(`round ${round}: no done in the replay`);
    else if (done !== names.length - 1) problems.push(`round ${round}: ${names.slice(done + 1).join(", ")} after done`);
    if (ends.length !== 1) problems.push(`round ${round}: end events ${ends.join(", ") || "none"}`);
    if (ends[0] === "message.cancelled") cancelledWins++;
    for (const fault of streamFaults(await c.streamedEvents(replyIdOf(s) ?? replyId))) problems.push(`round ${round}: the event stream in Redis has ${fault}`);

    // Resuming at the end event and at done: closes at once (within 3 s), with done at most.
    for (const at of [all.events.find((e) => END_EVENTS.includes(e.event ?? "")), all.events[done]]) {
      if (!at?.id) continue;
      const resumed = await followReply(api.url, conv, replyIdOf(s) ?? replyId, 3_000, at.id);
      if (!resumed.ended) problems.push(`round ${round}: a resume after ${at.event} did not close within 3 s`);
      const late = resumed.events.map((e) => e.event).filter((e) => e !== "done");
      if (late.length) problems.push(`round ${round}: a resume after ${at.event} got ${late.join(", ")}`);
    }
  }
  c.note(`${cancelledWins} of ${ROUNDS} rounds ended cancelled, the rest completed`);
  expect(problems).toEqual([]);
});

async function waitForReplyId(c: Parameters<Parameters<typeof scenario>[2]>[0], conv: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const [row] = await c.database.sql`select id from messages where conversation_id = ${conv} and role = 'assistant'`;
    if (row) return row.id as string;
    await sleep(10);
  }
  throw new Error("the reply was not stored within 2 s");
}
