import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { newConversationId, newMessageId } from "../../src/domain/ids.ts";
import { LostReplySweep, type LostReplyDeps } from "../../src/domain/lost-replies.ts";
import type { JobState, ReplyJob } from "../../src/queue/completions.ts";
import type { NewReplyEvent, ReplyEvent } from "../../src/streams/reply-events.ts";
import { useDomainDatabase } from "../support/service.ts";

/**
 * The sweep's rules, one sweep at a time with the clock in hand: a reply with
 * a job or a live run is never touched; one found with neither is acted on
 * only when a later sweep, a mark's lifetime on, still finds it so (a run
 * whose job Redis lost re-marks its reply within a period); then a reply no
 * worker ever took is queued again, any other failed `reply_lost`.
 */

const LIVENESS_MS = 1_000;
const CONFIRM_MS = 3 * LIVENESS_MS;

const ctx = useDomainDatabase();
afterEach(() => vi.useRealTimers());

/** A conversation with one reply in flight, created a minute ago (past any grace). */
async function replyInFlight(status: "queued" | "in_progress", attempt: number): Promise<string> {
  const conversationId = newConversationId();
  const replyId = newMessageId();
  const { sql } = ctx.database;
  await sql`insert into conversations (id, tenant_id, model, last_seq, message_count) values (${conversationId}, 'test', 'm', 1, 1)`;
  await sql`
    insert into messages (id, tenant_id, conversation_id, seq, role, content, status, model, attempt, created_at)
    values (${replyId}, 'test', ${conversationId}, 1, 'assistant', '', ${status}, 'm', ${attempt}, now() - interval '1 minute')`;
  return replyId;
}

const statusOf = async (replyId: string) => (await ctx.database.sql`select status, error, content from messages where id = ${replyId}`)[0];

/** A sweep over fakes: each reply's job state and liveness as the test sets them (other tests' replies have jobs). */
function sweepWith(jobs: Map<string, JobState>, alive: Set<string>, streams = new Map<string, ReplyEvent[]>()) {
  const enqueued: ReplyJob[] = [];
  const ended = new Map<string, NewReplyEvent[]>();
  const deps = {
    db: ctx.handle.db,
    jobQueue: {
      jobState: async (id: string) => jobs.get(id) ?? "pending",
      isPending: async (id: string) => (jobs.get(id) ?? "pending") === "pending",
      enqueue: async (job: ReplyJob) => void enqueued.push(job),
      close: async () => {},
    },
    replyEvents: {
      isAlive: async (id: string) => alive.has(id),
      seal: async () => {},
      readAfter: async (id: string) => streams.get(id) ?? [],
      end: async (id: string, events: NewReplyEvent[]) => {
        ended.set(id, events);
        return { status: "ok", ids: [] };
      },
    },
    replySlots: { release: async () => {} },
    log: pino({ level: "silent" }),
  } as unknown as LostReplyDeps;
  return { sweep: new LostReplySweep(deps, { graceMs: 1_000, livenessMs: LIVENESS_MS }), enqueued, ended };
}

describe("the lost-reply sweep", () => {
  it("leaves a reply whose run re-marks it after Redis restarted empty, and fails it once it stays unmarked a mark's lifetime", async () => {
    const replyId = await replyInFlight("in_progress", 1);
    const alive = new Set<string>();
    const { sweep } = sweepWith(new Map([[replyId, "gone"]]), alive);
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();

    // Right after the restart: no job, no mark yet. Not failed on one look.
    expect(await sweep.run()).toEqual({ failed: 0, requeued: 0 });
    // The run renews its mark within a period: the next sweep, however much later, leaves it alone.
    alive.add(replyId);
    vi.setSystemTime(t0 + CONFIRM_MS + 500);
    expect(await sweep.run()).toEqual({ failed: 0, requeued: 0 });
    expect((await statusOf(replyId))?.status).toBe("in_progress");

    // The run is gone: its mark lapses. First seen unmarked again, then failed a mark's lifetime later.
    alive.delete(replyId);
    vi.setSystemTime(t0 + CONFIRM_MS + 1_000);
    expect(await sweep.run()).toEqual({ failed: 0, requeued: 0 });
    vi.setSystemTime(t0 + CONFIRM_MS + 1_000 + CONFIRM_MS - 1);
    expect(await sweep.run()).toEqual({ failed: 0, requeued: 0 });
    vi.setSystemTime(t0 + CONFIRM_MS + 1_000 + CONFIRM_MS);
    expect(await sweep.run()).toEqual({ failed: 1, requeued: 0 });
    expect(await statusOf(replyId)).toMatchObject({ status: "failed", error: { code: "reply_lost" } });
  });

  it("never touches a reply whose job can still run", async () => {
    const replyId = await replyInFlight("in_progress", 1);
    const { sweep } = sweepWith(new Map([[replyId, "pending"]]), new Set());
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) {
      vi.setSystemTime(t0 + i * CONFIRM_MS * 2);
      await sweep.run();
    }
    expect((await statusOf(replyId))?.status).toBe("in_progress");
  });

  it("queues again a reply whose job vanished before any worker took it; fails one whose job ran and failed", async () => {
    const vanished = await replyInFlight("queued", 0);
    const jobFailed = await replyInFlight("queued", 0);
    const { sweep, enqueued } = sweepWith(new Map([[vanished, "gone"], [jobFailed, "ended"]]), new Set());
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    await sweep.run();
    expect(enqueued).toEqual([]);
    vi.setSystemTime(t0 + CONFIRM_MS);
    expect(await sweep.run()).toEqual({ failed: 1, requeued: 1 });
    expect(enqueued).toEqual([{ kind: "reply", replyId: vanished, tenantId: "test" }]);
    expect((await statusOf(vanished))?.status).toBe("queued");
    expect(await statusOf(jobFailed)).toMatchObject({ status: "failed", error: { code: "reply_lost" } });
  });

  it("ends a failed reply's followers with what is stored: a start-over when its events lost their start, none when they are whole", async () => {
    const lostStart = await replyInFlight("in_progress", 1);
    const whole = await replyInFlight("in_progress", 1);
    const delta = (id: string, content: string): ReplyEvent => ({ id: "2-0", event: "message.delta", data: JSON.stringify({ id, delta: { content } }) });
    const streams = new Map<string, ReplyEvent[]>([
      // After Redis restarted empty, only what the run wrote since: followers had the deltas before it.
      [lostStart, [delta(lostStart, " and the end")]],
      [whole, [{ id: "1-0", event: "message.created", data: "{}" }, delta(whole, "all of it")]],
    ]);
    const { sweep, ended } = sweepWith(new Map([[lostStart, "gone"], [whole, "gone"]]), new Set(), streams);
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    await sweep.run();
    vi.setSystemTime(t0 + CONFIRM_MS);
    expect(await sweep.run()).toEqual({ failed: 2, requeued: 0 });

    expect((await statusOf(lostStart))?.content).toBe(" and the end");
    expect(ended.get(lostStart)).toEqual([
      { event: "message.reset", data: { id: lostStart, reason: "events_lost" } },
      { event: "message.delta", data: { id: lostStart, delta: { content: " and the end" } } },
      expect.objectContaining({ event: "message.failed" }),
      { event: "done", data: "[DONE]" },
    ]);
    expect((await statusOf(whole))?.content).toBe("all of it");
    expect(ended.get(whole)?.map((e) => e.event)).toEqual(["message.failed", "done"]);
  });
});
