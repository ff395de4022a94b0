import { describe, expect, it } from "vitest";
import { seedTestApiKey } from "../support/keys.ts";
import { apiClient, authedFetch, readEvents } from "../support/http.ts";
import { useParleyProcesses, waitForOutput } from "../support/processes.ts";

const processes = useParleyProcesses();
const start = processes.start;
/** A fast simulator, and `extra`, on a database of the test's own. */
const environment = (extra: Record<string, string> = {}) =>
  processes.environment({ SIMULATOR_TTFT_MS: "0", SIMULATOR_TOKENS_PER_SECOND: "200", ...extra });

describe("processes", () => {
  it("runs the API and the worker as separate processes sharing Postgres and Redis", async () => {
    const { database, env: shared } = await environment();
    const port = shared.PORT;
    const apiProcess = start({ ...shared, ROLE: "api" });
    const workerProcess = start({ ...shared, ROLE: "worker" });
    await Promise.all([waitForOutput(apiProcess, "api listening"), waitForOutput(workerProcess, "worker started")]);
    await seedTestApiKey(database.sql);
    expect(apiProcess.output()).not.toContain("worker started");
    expect(workerProcess.output()).not.toContain("api listening");

    const api = apiClient(`http://127.0.0.1:${port}/v1`);
    const { body: conv } = await api.post("/conversations", { system: "Be kind." });
    const turn = await api.post(`/conversations/${conv.id}/messages`, { content: "hello from far away" });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
    expect(turn.body.reply.content.length).toBeGreaterThan(0);

    apiProcess.child.kill("SIGTERM");
    workerProcess.child.kill("SIGTERM");
    expect(await apiProcess.exited).toBe(0);
    expect(await workerProcess.exited).toBe(0);
  });

  it("on SIGTERM lets an in-flight streamed turn finish, then exits 0", async () => {
    const { database, env } = await environment({ SIMULATOR_TOKENS_PER_SECOND: "20", SHUTDOWN_TIMEOUT_MS: "20000" });
    const port = env.PORT;
    const p = start(env);
    await waitForOutput(p, "api listening");
    await seedTestApiKey(database.sql);
    const api = apiClient(`http://127.0.0.1:${port}/v1`);
    const { body: conv } = await api.post("/conversations", {});
    const res = await authedFetch(`http://127.0.0.1:${port}/v1/conversations/${conv.id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: "a slow one", stream: true, params: { simulate: { reply_tokens: 30 } } }),
    });
    const reading = readEvents(res);
    await new Promise((r) => setTimeout(r, 300)); // mid-reply: 30 tokens at 20/s take 1.5 s
    p.child.kill("SIGTERM");
    const { events } = await reading;
    expect(events.at(-2)?.event).toBe("message.completed");
    expect(events.filter((e) => e.event === "message.delta")).toHaveLength(30);
    expect(await p.exited).toBe(0);
    const [row] = await database.sql`select status, content from messages where conversation_id = ${conv.id} and role = 'assistant'`;
    expect(row?.status).toBe("completed");
    expect(p.output()).toContain("shutting down");
  });

  it("stops at start with one line naming a bad variable", async () => {
    const p = start((await environment({ PORT: "not-a-port", ROLE: "everything" })).env);
    expect(await p.exited).toBe(1);
    const lines = p.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/PORT/);
    expect(lines[0]).toMatch(/ROLE/);
  });
});
