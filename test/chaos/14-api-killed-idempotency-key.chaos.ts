import { expect } from "vitest";
import { conversations, eventually, question, request, scenario, sleep } from "./harness.ts";

const LEASE_MS = 3000;

/**
 * Issue 12 item 14: an API process SIGKILLed while it holds an
 * Idempotency-Key claim for a wait:true append and has stored nothing yet
 * (its turn transaction is held up by a row lock the test takes, which makes
 * the window between claim and result wide and certain). Done means a retry
 * with the same key on another API process is answered within a short bound
 * and not with 409 idempotency_key_in_use: the dead process's claim lapses
 * (IDEMPOTENCY_CLAIM_LEASE_MS, 3 s here) instead of wedging the key.
 */
scenario("14 API SIGKILLed holding an Idempotency-Key: a retry on another API is answered, not wedged", { timeoutMs: 120_000 }, async (c) => {
  const env = { IDEMPOTENCY_CLAIM_LEASE_MS: String(LEASE_MS) };
  const first = await c.start("api", { env });
  const second = await c.start("api", { env });
  await c.start("worker");
  const [conv] = await conversations(first.api, 1);
  const content = question(0, 8);
  const key = { "idempotency-key": `chaos-${Date.now()}` };

  let unlock = () => {};
  const unlocked = new Promise<void>((r) => (unlock = r));
  let locked = () => {};
  const isLocked = new Promise<void>((r) => (locked = r));
  const holding = c.database.sql.begin(async (tx) => {
    await tx`select id from conversations where id = ${conv!} for update`;
    locked();
    await unlocked;
  });
  await isLocked;
  try {
    const dying = request(first.url, "POST", `/conversations/${conv}/messages`, { content }, 60_000, key);
    await eventually("the first API claimed the key and waits on the row lock", 20_000, async () => {
      const [claim] = await c.database.sql`select count(*)::int as n from idempotency_keys`;
      const [waiting] = await c.database.sql`
        select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
      return claim!.n > 0 && waiting!.n > 0 ? true : null;
    });
    await first.kill();
    expect((await dying).status).toBeNull(); // the connection died with the process
  } finally {
    unlock();
    await holding;
  }
  await sleep(200);

  // The client retries at once on another instance.
  const retry = await request(second.url, "POST", `/conversations/${conv}/messages`, { content }, 45_000, key);
  const again = await request(second.url, "POST", `/conversations/${conv}/messages`, { content }, 45_000, key);
  const describe = (a: typeof retry) => `${a.status ?? a.error} ${a.body?.error?.code ?? a.body?.reply?.status ?? ""} in ${a.ms} ms`;
  c.note(`retry: ${describe(retry)}; second retry: ${describe(again)}; upstream calls: ${c.upstream.requests.length}`);
  for (const a of [retry, again]) {
    expect(a.status, a.error).not.toBeNull();
    expect(a.body?.error?.code).not.toBe("idempotency_key_in_use");
    expect(a.status).toBe(201);
    expect(a.ms).toBeLessThan(LEASE_MS + 10_000);
  }
  expect(again.body.reply.id).toBe(retry.body.reply.id); // the second retry replays the first's result
});
