import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeBehaviour, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, readEvents } from "../support/http.ts";
import { seedTestApiKey, TEST_API_KEY } from "../support/keys.ts";
import { freePort, useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";
import { startTcpProxy } from "../support/tcp-proxy.ts";

/**
 * The docs promise (docs/GUIDE.md) that keys, message content and upstream error text are
 * never logged. One Parley process at debug level is put through every failure
 * path we can reach with one secret in the upstream's key, the system prompt,
 * the messages, the metadata and everything the upstream says; then its whole
 * output (stdout and stderr) is searched for the secret.
 */

const SECRET = `sk-logleak-${randomBytes(12).toString("hex")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const processes = useParleyProcesses();
let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(() => upstream?.close());

describe("logs", () => {
  it("never hold a secret from a key, a prompt, a message or an upstream's words, on any failure path", { timeout: 180_000 }, async () => {
    const refused = await freePort();
    const { database, env } = await processes.environment({
      LOG_LEVEL: "debug",
      UPSTREAM_MAX_RETRIES: "1",
      SHUTDOWN_TIMEOUT_MS: "3000",
      UPSTREAMS: JSON.stringify([
        { name: "fake", base_url: upstream.baseURL, api_key: SECRET, models: ["fake-model"] },
        { name: "slow", base_url: upstream.baseURL, api_key: SECRET, models: ["slow-model"], timeout_ms: 1000 },
        { name: "down", base_url: `http://127.0.0.1:${refused}/v1`, api_key: SECRET, models: ["down-model"] },
      ]),
    });
    // Postgres through a proxy of the test's own, to cut it mid-turn.
    const pgUrl = new URL(database.url);
    const pg = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    pgUrl.port = String(pg.port);
    const parley: ParleyProcess = processes.start({ ...env, DATABASE_URL: pgUrl.toString() });
    try {
      await waitForOutput(parley, "api listening");
      await waitForOutput(parley, "worker started");
      await seedTestApiKey(database.sql);
      const base = `http://127.0.0.1:${env.PORT}/v1`;
      const api = apiClient(base);

      /** A conversation with the secret in its prompt and metadata, and a turn with it in the message. */
      async function turn(model: string, behaviour: FakeBehaviour, extra: Record<string, unknown> = {}) {
        upstream.setBehaviour(behaviour);
        const { body: conv } = await api.post("/conversations", { model, system: `Keep ${SECRET} safe.`, metadata: { note: SECRET } });
        const res = await api.post(`/conversations/${conv.id}/messages`, { content: `hello ${SECRET}`, ...extra });
        return { conv, res };
      }
      const failedWith = async (model: string, behaviour: FakeBehaviour) => {
        const { res } = await turn(model, behaviour);
        expect(res.status).toBe(201);
        expect(res.body.reply.status).toBe("failed");
        return res.body.reply.error as { code: string; message: string };
      };

      // The upstream refuses our key, quoting it: the client is told in the upstream's words, key masked.
      const refusedKey = await failedWith("fake-model", {
        kind: "status",
        status: 401,
        body: { error: { message: `Incorrect API key provided: ${SECRET}.`, type: "invalid_request_error", code: "invalid_api_key" } },
      });
      expect(refusedKey.message).toContain("Incorrect API key provided: [masked]");
      expect(refusedKey.message).not.toContain(SECRET);
      // A 500 quoting the key and an internal address, as JSON and as plain text.
      await failedWith("fake-model", { kind: "status", status: 500, body: { error: { message: `crashed at 10.1.2.3:8000 with ${SECRET}` } } });
      await failedWith("fake-model", { kind: "status", status: 502, body: `bad gateway ${SECRET}` });
      // Errors inside the stream after two tokens: a data payload with `error`, an `event: error`, a malformed event.
      await failedWith("fake-model", { kind: "stream-then", afterTokens: 2, raw: `data: {"error":{"message":"failed on ${SECRET}"}}\n\n` });
      await failedWith("fake-model", { kind: "stream-then", afterTokens: 2, raw: `event: error\ndata: overloaded ${SECRET}\n\n` });
      await failedWith("fake-model", { kind: "stream-then", afterTokens: 2, raw: `data: {"not json ${SECRET}\n\n` });
      // A connection refused, and an upstream that outlives its timeout_ms.
      expect((await failedWith("down-model", { kind: "ok" })).code).toBe("upstream_unreachable");
      expect((await failedWith("slow-model", { kind: "ok", tokenDelayMs: 300, text: `${SECRET} `.repeat(20) })).code).toBe("upstream_timeout");
      // A reply Postgres cannot store as sent (a NUL), with the secret around it.
      await turn("fake-model", { kind: "ok", text: `${SECRET} \u0000 ${SECRET}` });

      // Chat completions, whole and streamed, failing the same ways.
      upstream.setBehaviour({ kind: "status", status: 401, body: { error: { message: `Incorrect API key provided: ${SECRET}` } } });
      const messages = [
        { role: "system", content: `Keep ${SECRET} safe.` },
        { role: "user", content: `hello ${SECRET}` },
      ];
      const whole = await api.post("/chat/completions", { model: "fake-model", messages });
      expect(whole.status).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(whole.body)).not.toContain(SECRET);
      upstream.setBehaviour({ kind: "stream-then", afterTokens: 1, raw: `event: error\ndata: ${SECRET}\n\n` });
      const streamed = await authedFetch(`${base}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "fake-model", messages, stream: true }),
      });
      await readEvents(streamed);
      // A request Parley refuses, quoting the secret.
      expect((await api.post("/conversations", { title: 7, system: SECRET })).status).toBe(400);

      // Postgres cut mid-reply: the reply's final write fails with its content as a parameter.
      const { conv, res } = await turn("fake-model", { kind: "ok", tokenDelayMs: 100, text: `${SECRET} `.repeat(20) }, { wait: false });
      expect(res.status).toBe(202);
      await sleep(500);
      await pg.cut();
      // A write from the API while Postgres is away: the insert's parameters hold the secret.
      const whileCut = await api.post("/conversations", { system: `Keep ${SECRET} safe.` }).catch(() => null);
      expect(whileCut?.status ?? 503).toBeGreaterThanOrEqual(500);
      await sleep(4_000); // the reply's 20 tokens end meanwhile, and its final write meets the cut
      await pg.restore();
      // Give the reply a bounded time to be ended, by its worker or by the sweep.
      for (let i = 0; i < 60; i++) {
        const reply = await api.get(`/conversations/${conv.id}/messages/${res.body.reply.id}`).catch(() => null);
        if (reply && reply.status === 200 && !["queued", "in_progress"].includes(reply.body.status)) break;
        await sleep(500);
      }
    } finally {
      await pg.close();
      parley.child.kill("SIGTERM");
      await Promise.race([parley.exited, sleep(15_000)]);
    }

    const output = parley.output();
    const lines = output
      .trim()
      .split("\n")
      .map((line) => {
        try {
          return JSON.parse(line) as Record<string, any>;
        } catch {
          return { unparsed: line };
        }
      });
    // The failure paths ran and were logged, with their errors.
    expect(lines.filter((l) => l.msg === "reply failed").length).toBeGreaterThanOrEqual(8);
    expect(lines.filter((l) => JSON.stringify(l).match(/"type":"(DrizzleQueryError|PostgresError)"|"code":"(CONNECTION_[A-Z]+|ECONNREFUSED|ECONNRESET)"/)).length).toBeGreaterThan(0);
    // …and none of them holds the secret, the client's key, or an upstream's internal address.
    const hits = output.split("\n").filter((line) => line.includes(SECRET) || line.includes(TEST_API_KEY) || line.includes("10.1.2.3"));
    expect(hits).toEqual([]);
  });
});
