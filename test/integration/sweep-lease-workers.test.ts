import { describe, expect, it } from "vitest";
import { newConversationId, newMessageId } from "../../src/domain/ids.ts";
import { TEST_TENANT, seedTestApiKey } from "../support/keys.ts";
import { useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";
import type { TestDatabase } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/**
 * Three worker processes over one Postgres, one Redis and one prefix: one of them at a time runs the sweeps
 * (it holds the sweep lease), a lost reply is still failed, and when the holder is SIGKILLed another worker
 * takes the lease over and fails the next lost reply.
 */

const processes = useParleyProcesses();
const SWEEP_LEASE_MS = 1500;

/** Lines a process logged whose message starts with `msg`. */
const logged = (p: ParleyProcess, msg: string): number =>
  p.output().split("\n").filter((line) => line.includes(`"msg":"${msg}`)).length;

/** A reply in flight with no job to run it (as after Redis lost its data), a minute old. */
async function lostReply(database: TestDatabase): Promise<string> {
  const conversationId = newConversationId();
  const replyId = newMessageId();
  await database.sql`
    insert into conversations (id, tenant_id, model, message_count, last_seq) values (${conversationId}, ${TEST_TENANT}, 'parley-sim-1', 1, 1)`;
  await database.sql`
    insert into messages (id, tenant_id, conversation_id, seq, role, content, status, model, created_at)
    values (${replyId}, ${TEST_TENANT}, ${conversationId}, 1, 'assistant', '', 'in_progress', 'parley-sim-1', now() - interval '1 minute')`;
  return replyId;
}

async function failedAsLost(database: TestDatabase, replyId: string): Promise<void> {
  const row = await eventually(
    async () => {
      const [r] = await database.sql`select status, error from messages where id = ${replyId}`;
      return r && r.status !== "in_progress" ? r : null;
    },
    { what: `reply ${replyId} swept`, timeoutMs: 60_000, everyMs: 200 },
  );
  expect(row).toMatchObject({ status: "failed", error: { code: "reply_lost" } });
}

describe("sweeps with three workers", () => {
  it("are run by one worker at a time, and taken over when it is killed", async () => {
    const { database, env } = await processes.environment({
      ROLE: "worker",
      LOG_LEVEL: "debug",
      LOST_REPLY_SWEEP_MS: "200",
      LOST_REPLY_GRACE_MS: "1000",
      REPLY_LIVENESS_MS: "100",
      SWEEP_LEASE_MS: String(SWEEP_LEASE_MS),
    });
    const workers = [processes.start(env), processes.start(env), processes.start(env)];
    await Promise.all(workers.map((w) => waitForOutput(w, "worker started", 60_000)));
    await seedTestApiKey(database.sql);

    // Over many intervals, one worker sweeps and the others never do.
    const holder = await eventually(async () => workers.find((w) => logged(w, "sweep ran") >= 10), {
      what: "10 sweeps by one worker",
      timeoutMs: 60_000,
    });
    const others = workers.filter((w) => w !== holder);
    expect(others.map((w) => [logged(w, "took the sweep lease"), logged(w, "sweep ran")])).toEqual([[0, 0], [0, 0]]);
    expect(logged(holder, "took the sweep lease")).toBe(1);

    // A lost reply is failed (by the holder).
    await failedAsLost(database, await lostReply(database));

    // The holder dies without giving the lease back; within the lease bound another worker takes it, alone.
    holder.child.kill("SIGKILL");
    await holder.exited;
    const next = await eventually(async () => others.find((w) => logged(w, "sweep ran") > 0), {
      what: "another worker sweeping",
      timeoutMs: 60_000,
    });
    await failedAsLost(database, await lostReply(database));
    const bystander = others.find((w) => w !== next)!;
    expect([logged(next, "took the sweep lease"), logged(bystander, "took the sweep lease"), logged(bystander, "sweep ran")]).toEqual([1, 0, 0]);

    // A worker stopped gracefully gives the lease back, and the last one takes it.
    next.child.kill("SIGTERM");
    expect(await next.exited).toBe(0);
    await failedAsLost(database, await lostReply(database));
    expect(logged(bystander, "took the sweep lease")).toBe(1);
  }, 180_000);
});
