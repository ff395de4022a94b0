import { expect } from "vitest";
import { END_EVENTS, conversations, countBy, followReply, question, replyIdOf, request, scenario, sleep, streamFaults, streamTurn, type Chaos } from "./harness.ts";

const ROUNDS = 40;
const AT_ONCE = 10;

/**
 * Issue 12 item 8: cancel sent while the reply's last deltas are being
 * written, 40 rounds, 10 at a time (the cancel lands at a different point of
 * the reply each round). Done means no event is written after a reply's
 * `done` (checked in the stream Redis holds, not only in a replay), every
 * reply has exactly one end event, and a follower resuming at or after the
 * end closes at once.
 */
scenario("8 cancel racing completion, 40 rounds: nothing after done; a resume after done closes at once", { timeoutMs: 150_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 5 }); // 42 quick deltas: ~210 ms, one write after another
  const api = await c.start("api");
  await c.start("worker");
  const convs = await conversations(api.api, ROUNDS);
  const problems: string[] = [];
  const ends: string[] = [];

  for (let first = 0; first < ROUNDS; first += AT_ONCE) {
    await Promise.all(
      convs.slice(first, first + AT_ONCE).map(async (conv, k) => {
        const round = first + k;
        const found = await raceOnce(c, api.url, conv, round);
        problems.push(...found.problems.map((p) => `round ${round}: ${p}`));
        ends.push(found.end);
      }),
    );
  }
  c.note(`rounds ended ${countBy(ends)}`);
  expect(problems).toEqual([]);
});

async function raceOnce(c: Chaos, apiUrl: string, conv: string, round: number): Promise<{ problems: string[]; end: string }> {
  const problems: string[] = [];
  const streamed = streamTurn(apiUrl, conv, question(round, 40), 20_000);
  // Cancel once the reply is stored, at a point that moves through the reply round by round.
  const replyId = await waitForReplyId(c, conv);
  await sleep(50 + (round % AT_ONCE) * 45 + Math.floor(round / AT_ONCE) * 10);
  await request(apiUrl, "POST", `/conversations/${conv}/messages/${replyId}/cancel`, {}, 10_000);
  const s = await streamed;
  if (!s.ended) problems.push(`the streamed turn did not end (${s.error})`);
  await sleep(500); // anything written late lands now

  // The stream as Redis holds it: one end event, then done, then nothing.
  problems.push(...streamFaults(await c.streamedEvents(replyId)).map((f) => `the event stream in Redis has ${f}`));
  // The same, replayed over the API from the start.
  const all = await followReply(apiUrl, conv, replyIdOf(s) ?? replyId, 5_000);
  const names = all.events.map((e) => e.event ?? "");
  const done = names.indexOf("done");
  if (!all.ended) problems.push(`a replay from the start did not close (${all.error})`);
  if (done < 0) problems.push("no done in the replay");
  else if (done !== names.length - 1) problems.push(`the replay has ${countBy(names.slice(done + 1))} after done`);
  const end = names.find((n) => END_EVENTS.includes(n)) ?? "none";

  // Resuming at the end event and at done: closes at once (within 3 s), with done at most.
  for (const at of [all.events.find((e) => END_EVENTS.includes(e.event ?? "")), all.events[done]]) {
    if (!at?.id) continue;
    const resumed = await followReply(apiUrl, conv, replyId, 3_000, at.id);
    if (!resumed.ended) problems.push(`a resume after ${at.event} did not close within 3 s`);
    const late = resumed.events.map((e) => e.event).filter((e) => e !== "done");
    if (late.length) problems.push(`a resume after ${at.event} got ${countBy(late)}`);
  }
  return { problems, end };
}

async function waitForReplyId(c: Chaos, conv: string): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const [row] = await c.database.sql`select id from messages where conversation_id = ${conv} and role = 'assistant'`;
    if (row) return row.id as string;
    await sleep(10);
  }
  throw new Error("the reply was not stored within 5 s");
}
