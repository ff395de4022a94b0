import { describe, expect, it } from "vitest";
import { migrateDatabase } from "../../src/db/migrate.ts";
import { apiClient, authedFetch } from "../support/http.ts";
import { seedApiKeyFor } from "../support/keys.ts";
import { useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";

const processes = useParleyProcesses();
const start = processes.start;
/** A fast simulator, and `extra`, on a database of the test's own. */
const freshEnv = (extra: Record<string, string> = {}) =>
  processes.environment({ SIMULATOR_TTFT_MS: "0", SIMULATOR_TOKENS_PER_SECOND: "500", ...extra });

describe("production mode", () => {
  it("refuses to start with no key and no ADMIN_SECRET, saying what to set", async () => {
    const { env } = await freshEnv({ NODE_ENV: "production" });
    const p = start(env);
    expect(await p.exited).toBe(1);
    const lines = p.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("ADMIN_SECRET");
    expect(lines[0]).toContain("npm run keys -- create --tenant");
  });

  it("refuses an ADMIN_SECRET shorter than 32 characters", async () => {
    const { env } = await freshEnv({ NODE_ENV: "production", ADMIN_SECRET: "too-short" });
    const p = start(env);
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/ADMIN_SECRET.*32/);
  });

  it("starts with an ADMIN_SECRET, or with a key already made", async () => {
    const withSecret = start((await freshEnv({ NODE_ENV: "production", ADMIN_SECRET: "s".repeat(32) })).env);
    await waitForOutput(withSecret, "api listening");

    const { database, env } = await freshEnv({ NODE_ENV: "production", ROLE: "api" });
    // As `npm run keys -- create` does: migrate, then make a key.
    await migrateDatabase(database.url);
    await seedApiKeyFor(database.sql, "prod");
    const withKey = start(env);
    await waitForOutput(withKey, "api listening");
  });
});

describe("logs", () => {
  it("are JSON lines carrying the request id into the worker's lines, and never a key, an Authorization header or content", async () => {
    const { database, env } = await freshEnv({ LOG_LEVEL: "info" });
    const apiProcess = start({ ...env, ROLE: "api" });
    const workerProcess = start({ ...env, ROLE: "worker" });
    await Promise.all([waitForOutput(apiProcess, "api listening"), waitForOutput(workerProcess, "worker started")]);
    const key = await seedApiKeyFor(database.sql, "logged");
    const api = apiClient(`http://127.0.0.1:${env.PORT}/v1`, key);

    const secretWords = "pelicans-are-confidential-7731";
    const requestId = "trace-me-4242";
    const { body: conv } = await api.post("/conversations", { system: `system ${secretWords}`, metadata: { note: secretWords } });
    const turn = await api.post(`/conversations/${conv.id}/messages`, { content: `tell me about ${secretWords}` }, { "x-request-id": requestId });
    expect(turn.status).toBe(201);
    expect(turn.headers.get("x-request-id")).toBe(requestId);
    const replyText: string = turn.body.reply.content;
    expect(replyText.length).toBeGreaterThan(10);
    // A failing reply (its error text is content too), a refused key and a bad body.
    await api.post(`/conversations/${conv.id}/messages`, {
      content: secretWords,
      params: { simulate: { fail_after_tokens: 1, error_message: `failed on ${secretWords}` } },
    });
    const wrongKey = `prly_0123456789ab_${"c".repeat(48)}`;
    expect((await authedFetch(`http://127.0.0.1:${env.PORT}/v1/models`, {}, wrongKey)).status).toBe(401);
    expect((await api.post("/conversations", { title: 7, system: secretWords })).status).toBe(400);

    // The worker logs after the reply is stored; give its last lines a moment to be written.
    await waitForOutput(workerProcess, '"msg":"model job finished"');
    apiProcess.child.kill("SIGTERM");
    workerProcess.child.kill("SIGTERM");
    await Promise.all([apiProcess.exited, workerProcess.exited]);

    const lines = (p: ParleyProcess) => p.output().trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    const apiLines = lines(apiProcess);
    const workerLines = lines(workerProcess);
    expect(apiLines.find((l) => l.requestId === requestId && l.msg === "request")).toMatchObject({
      method: "POST",
      path: `/v1/conversations/${conv.id}/messages`,
      status: 201,
      tenantId: "logged",
    });
    const failed = workerLines.find((l) => l.msg === "reply failed");
    expect(failed).toMatchObject({ code: "simulated_failure", err: { type: "ProviderError", code: "simulated_failure" } });
    const jobLines = workerLines.filter((l) => l.requestId === requestId);
    expect(jobLines.map((l) => l.msg)).toEqual(["model job started", "model job finished"]);
    expect(jobLines[0]).toMatchObject({ jobId: turn.body.reply.id, tenantId: "logged" });

    const everything = apiProcess.output() + workerProcess.output();
    for (const secret of [key, key.slice(18), wrongKey.slice(18), "Bearer", secretWords, replyText]) {
      expect(everything).not.toContain(secret);
    }
  });
});
