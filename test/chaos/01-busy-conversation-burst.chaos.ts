import { expect } from "vitest";
import { seedApiKeyFor } from "../support/keys.ts";
import { conversations, question, request, scenario, tally } from "./harness.ts";

/**
 * Issue 12 item 1: 200 concurrent appends to one conversation (a real API
 * process, its reply slow). Done means every request is answered, exactly one
 * accepted and the rest 409 conversation_busy (not 429), another tenant is
 * served at once meanwhile, and no Postgres session is left idle in a
 * transaction.
 */
scenario("1 200 concurrent appends to one busy conversation: all answered, 1 accepted, 199 busy; others served", { timeoutMs: 120_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 250 }); // the accepted reply runs ~15 s: busy for the whole burst
  const api = await c.start("api");
  await c.start("worker");
  const otherKey = await seedApiKeyFor(c.database.sql, "chaos-other");
  const [conv] = await conversations(api.api, 1);

  const burst = Array.from({ length: 200 }, (_, i) =>
    request(api.url, "POST", `/conversations/${conv}/messages`, { content: question(i, 60), wait: false }, 60_000),
  );
  // Another tenant, while the burst is in flight: a new conversation and a turn on the simulator.
  const otherStarted = Date.now();
  const other = await request(api.url, "POST", "/conversations", { model: "parley-sim-1" }, 30_000, {}, otherKey);
  const otherTurn =
    other.status === 201
      ? await request(api.url, "POST", `/conversations/${other.body.id}/messages`, { content: "hello" }, 30_000, {}, otherKey)
      : other;
  const otherMs = Date.now() - otherStarted;
  const answers = await Promise.all(burst);

  const [sessions] = await c.database.sql`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and state like 'idle in transaction%'`;
  const idleInTransaction = sessions!.n as number;
  c.note(`burst answered ${tally(answers)}; other tenant served in ${otherMs} ms (${otherTurn.status}); idle in transaction: ${idleInTransaction}`);

  expect(answers.filter((a) => a.status === null).map((a) => a.error)).toEqual([]);
  expect(answers.filter((a) => a.status === 202)).toHaveLength(1);
  expect(answers.filter((a) => a.status === 409 && a.body?.error?.code === "conversation_busy")).toHaveLength(199);
  expect(other.status).toBe(201);
  expect(otherTurn.status).toBe(201);
  expect(otherMs).toBeLessThan(10_000);
  expect(idleInTransaction).toBe(0);
});
