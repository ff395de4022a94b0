import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { seedTestApiKey, TEST_TENANT } from "../support/keys.ts";
import { apiClient, authedFetch, readEvents } from "../support/http.ts";
import { useParleyProcesses, waitForOutput } from "../support/processes.ts";
import { startTestService, type TestService } from "../support/service.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(() => upstream?.close());

/** Processes served by the fake upstream, with short job locks so a lost worker's job is taken again quickly. */
const fakeUpstreamEnv = () => ({
  UPSTREAMS: JSON.stringify([{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }]),
  WORKER_LOCK_MS: "1500",
  WORKER_STALLED_CHECK_MS: "500",
});

describe("a worker killed mid-reply", () => {
  const processes = useParleyProcesses();

  it("is replaced: another worker produces the reply again, stored once, and followers are told to start over", async () => {
    upstream.reset();
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100 });
    const { database, env } = await processes.environment(fakeUpstreamEnv());
    const port = env.PORT;
    const start = (role: string) => processes.start({ ...env, ROLE: role });
    const apiProcess = start("api");
    const firstWorker = start("worker");
    await Promise.all([waitForOutput(apiProcess, "api listening"), waitForOutput(firstWorker, "worker started")]);
    await seedTestApiKey(database.sql);

    const api = apiClient(`http://127.0.0.1:${port}/v1`);
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const question = "one two three four five six seven eight nine ten eleven twelve";
    const res = await authedFetch(`http://127.0.0.1:${port}/v1/conversations/${conv.id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: question, stream: true }),
    });
    const reading = readEvents(res);
    // Kill the worker once a few tokens are out.
    for (let i = 0; i < 200; i++) {
      const [row] = await database.sql`select count(*)::int as n from messages where conversation_id = ${conv.id}`;
      if (row?.n === 2 && upstream.requests.length === 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 400));
    firstWorker.child.kill("SIGKILL");
    await firstWorker.exited;
    const secondWorker = start("worker");
    await waitForOutput(secondWorker, "worker started");

    const { events } = await reading;
    const names = events.map((e) => e.event);
    const reset = names.indexOf("message.reset");
    expect(reset).toBeGreaterThan(2); // after some deltas from the first worker
    const after = events.slice(reset + 1);
    const text = after.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content).join("");
    expect(text).toBe(upstream.replyTextFor(question));
    expect(names.at(-2)).toBe("message.completed");
    expect(upstream.requests).toHaveLength(2);

    const rows = await database.sql`select seq, role, status, content from messages where conversation_id = ${conv.id} order by seq`;
    expect(rows.map((r) => [r.seq, r.role, r.status])).toEqual([
      [1, "user", "completed"],
      [2, "assistant", "completed"],
    ]);
    expect(rows[1]?.content).toBe(upstream.replyTextFor(question));
    expect(secondWorker.output()).toContain("reply restarts");
  }, 90_000);
});

describe("a worker told to stop (SIGTERM) mid-reply", () => {
  const processes = useParleyProcesses();

  it("exits 0 at its drain bound and leaves the unfinished reply to another worker, not lost", async () => {
    upstream.reset();
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 150 });
    const { database, env } = await processes.environment({ ...fakeUpstreamEnv(), SHUTDOWN_TIMEOUT_MS: "300" });
    const port = env.PORT;
    const start = (role: string) => processes.start({ ...env, ROLE: role });
    const apiProcess = start("api");
    const worker = start("worker");
    await Promise.all([waitForOutput(apiProcess, "api listening"), waitForOutput(worker, "worker started")]);
    await seedTestApiKey(database.sql);
    const api = apiClient(`http://127.0.0.1:${port}/v1`);
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const question = "a question whose answer takes longer than the drain bound";
    const turn = api.post(`/conversations/${conv.id}/messages`, { content: question });
    await new Promise((r) => setTimeout(r, 500));
    worker.child.kill("SIGTERM");
    expect(await worker.exited).toBe(0);
    expect(worker.output()).toContain("left to other workers");
    const [midway] = await database.sql`select status from messages where conversation_id = ${conv.id} and role = 'assistant'`;
    expect(midway?.status).toBe("in_progress");

    await waitForOutput(start("worker"), "worker started");
    const res = await turn;
    expect(res.body.reply).toMatchObject({ status: "completed", content: upstream.replyTextFor(question) });
    const [row] = await database.sql`select count(*)::int as n from messages where conversation_id = ${conv.id}`;
    expect(row?.n).toBe(2);
  }, 90_000);
});

describe("a reply whose job is gone", () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService({ LOST_REPLY_SWEEP_MS: 200, LOST_REPLY_GRACE_MS: 0 });
  });
  afterAll(() => service?.stop());

  it("is found and failed with a clear error, and the conversation takes new turns", async () => {
    const api = apiClient(`${service.url}/v1`);
    const { body: conv } = await api.post("/conversations", {});
    // A reply in flight in Postgres with no job in Redis and no live run: what a flushed Redis leaves behind
    // once the worker that had taken it died too. (One no worker had taken is queued again instead:
    // lost-reply-liveness.test.ts.)
    const replyId = "msg_01jf3t8vvaf8s9k0d7k6x1s2y3";
    await service.sql`insert into messages (id, tenant_id, conversation_id, seq, role, content, status, model, attempt)
      values (${replyId}, ${TEST_TENANT}, ${conv.id}, 1, 'assistant', '', 'in_progress', 'parley-sim-1', 1)`;
    await service.sql`update conversations set last_seq = 1, message_count = 1 where id = ${conv.id}`;
    expect((await api.post(`/conversations/${conv.id}/messages`, { content: "hello?" })).status).toBe(409);

    const followed = await readEvents(await authedFetch(`${service.url}/v1/conversations/${conv.id}/messages/${replyId}/events`));
    const failed = JSON.parse(followed.events.find((e) => e.event === "message.failed")!.data);
    expect(failed).toMatchObject({ id: replyId, status: "failed", error: { code: "reply_lost" } });
    const [row] = await service.sql`select status, error from messages where id = ${replyId}`;
    expect(row).toMatchObject({ status: "failed", error: { code: "reply_lost" } });
    const next = await api.post(`/conversations/${conv.id}/messages`, { content: "hello again" });
    expect(next.status).toBe(201);
    expect(next.body.reply.status).toBe("completed");
  });
});
