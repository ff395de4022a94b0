import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient } from "../support/http.ts";
import { seedTestApiKey } from "../support/keys.ts";
import { freePort } from "../support/processes.ts";
import { createTestDatabase, startTestServiceBehindPgProxy, type TestServiceBehindPgProxy, testConfig } from "../support/service.ts";
import type { TcpProxy } from "../support/tcp-proxy.ts";
import { eventually, sleep } from "../support/waiting.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(() => upstream?.close());

describe("Postgres down", () => {
  let service: TestServiceBehindPgProxy;
  let proxy: TcpProxy;
  beforeAll(async () => {
    service = await startTestServiceBehindPgProxy();
    proxy = service.pgProxy;
  });
  afterAll(() => service?.stop());

  it("answers 503 with a clear error while it is away, and recovers by itself", async () => {
    const api = apiClient(`${service.url}/v1`);
    const { body: conv } = await api.post("/conversations", { title: "survives" });
    await proxy.cut();
    for (const res of [await api.get("/conversations"), await api.post("/conversations", { title: "during" })]) {
      expect(res.status).toBe(503);
      expect(res.body.error).toMatchObject({ type: "server_error", code: "service_unavailable" });
      expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts:\d+/); // no stack trace
    }
    await proxy.restore();
    const back = await eventually(async () => {
      const res = await api.get(`/conversations/${conv.id}`);
      return res.status === 200 ? res : null;
    }, { what: "the conversation is read again", timeoutMs: 15_000 });
    expect(back.body.title).toBe("survives");
    expect((await api.post(`/conversations/${conv.id}/messages`, { content: "still here?" })).body.reply.status).toBe("completed");
  });
});

describe("Redis restarted mid-load", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let service: RunningService;
  let redis: ChildProcess;
  let port: number;
  const startRedis = async () => {
    redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    await sleep(300);
  };
  beforeAll(async () => {
    port = await freePort();
    await startRedis();
    database = await createTestDatabase();
    const config = testConfig(database.url, {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
      LOST_REPLY_SWEEP_MS: 300,
      LOST_REPLY_GRACE_MS: 1000,
      WORKER_LOCK_MS: 1500,
      WORKER_STALLED_CHECK_MS: 500,
    });
    service = await startService(config, createLogger("silent"));
    await seedTestApiKey(database.sql);
  });
  afterAll(async () => {
    await service?.stop();
    redis?.kill("SIGKILL");
    await database?.drop();
  });

  it("loses no stored message, ends every reply completed or failed, and takes turns again", async () => {
    upstream.reset();
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 60 });
    const api = apiClient(`${service.url}/v1`);
    const conversations = await Promise.all(
      Array.from({ length: 8 }, async () => (await api.post("/conversations", { model: "fake-model" })).body.id as string),
    );
    const turns = Promise.all(
      conversations.map((id) => api.post(`/conversations/${id}/messages`, { content: "a reply that takes a while to stream" })),
    );
    // Killed once every turn is stored and replies are streaming, however long a loaded machine took to get there.
    await eventually(async () => {
      const [row] = await database.sql`select count(*)::int as stored, (count(*) filter (where status = 'in_progress'))::int as streaming
                                       from messages where role = 'assistant'`;
      return row?.stored === conversations.length && row.streaming > 0 ? true : null;
    }, { what: "every turn stored, replies streaming", timeoutMs: 20_000 });
    redis.kill("SIGKILL");
    await once(redis, "exit");
    await sleep(300);
    await startRedis();
    const answered = await turns;
    for (const res of answered) expect([201, 503]).toContain(res.status);

    // Every reply that was stored ends, one way or the other.
    await eventually(async () => {
      const [row] = await database.sql`select count(*)::int as n from messages where status in ('queued', 'in_progress')`;
      return row?.n === 0 ? true : null;
    }, { what: "every reply ended", timeoutMs: 20_000 });
    const rows = await database.sql`select conversation_id, seq, role, status from messages order by conversation_id, seq`;
    for (const id of conversations) {
      const mine = rows.filter((r) => r.conversation_id === id);
      expect(mine.map((r) => r.seq)).toEqual(mine.map((_, i) => i + 1));
      expect(mine[0]?.role).toBe("user");
      if (mine[1]) expect(["completed", "failed"]).toContain(mine[1].status);
    }
    const accepted = answered.filter((r) => r.status === 201).length;
    expect(rows.filter((r) => r.role === "user")).toHaveLength(8);
    expect(accepted).toBeGreaterThan(0);

    upstream.setBehaviour({ kind: "ok" });
    const next = await eventually(async () => {
      const res = await api.post(`/conversations/${conversations[0]}/messages`, { content: "are you back?" });
      return res.status === 201 && res.body.reply.status === "completed" ? res : null;
    }, { what: "a turn is taken again", timeoutMs: 20_000 });
    expect(next.body.reply.content).toBe(upstream.replyTextFor("are you back?"));
  }, 60_000);
});
