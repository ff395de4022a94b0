import { drizzle } from "drizzle-orm/postgres-js";
import { sql } from "drizzle-orm";
import { ReplyError } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConversationBusyError, InvalidRequestError } from "../src/domain/errors.ts";
import { createLogger, logSafeError } from "../src/logger.ts";
import { createOpenAICompatibleProvider } from "../src/providers/openai-compatible.ts";
import { startFakeUpstream, type FakeUpstream } from "./support/fake-upstream.ts";
import { freePort } from "./support/processes.ts";
import { createTestDatabase, type TestDatabase } from "./support/service.ts";

const SECRET = "sk-logged-nowhere-5c1e7a90b2";

/** A logger at trace level whose every line lands in `lines`. */
function capturedLogger() {
  const lines: string[] = [];
  const log = createLogger("trace", { write: (line: string) => void lines.push(line) });
  return { log, lines, text: () => lines.join("") };
}

let database: TestDatabase;
let upstream: FakeUpstream;
beforeAll(async () => {
  database = await createTestDatabase();
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await database?.drop();
  await upstream?.close();
});

const request = { model: "fake-model", messages: [{ role: "user" as const, content: `hello ${SECRET}` }], params: {} };
const failure = (p: Promise<unknown>) => p.then(() => expect.unreachable("should have failed"), (err: unknown) => err);

describe("logged errors", () => {
  it("leave out a failed query's parameters and Postgres' quoting of the value, keeping its codes", async () => {
    const db = drizzle(database.sql);
    const err = await failure(db.execute(sql`select ${SECRET}::int`));
    expect(String(err) + String((err as Error).cause)).toContain(SECRET); // what the drivers say
    const { log, lines, text } = capturedLogger();
    log.error({ err }, "query failed");
    expect(text()).not.toContain(SECRET);
    const line = JSON.parse(lines[0]!);
    expect(line.msg).toBe("query failed");
    expect(line.err).toMatchObject({
      type: "DrizzleQueryError",
      cause: { type: "PostgresError", code: "22P02", severity: "ERROR", routine: expect.any(String) },
    });
    expect(line.err.message).toBeUndefined();
    expect(line.err.stack).toMatch(/^ {4}at /);
  });

  it("leave out what an upstream said, and the key it quoted", async () => {
    upstream.setBehaviour({
      kind: "status",
      status: 401,
      body: { error: { message: `Incorrect API key provided: ${SECRET}`, type: "invalid_request_error", code: SECRET } },
    });
    const provider = createOpenAICompatibleProvider({
      name: "fake",
      base_url: upstream.baseURL,
      api_key: "sk-ours-0123456789",
      models: ["fake-model"],
      strip_prefix: true,
      timeout_ms: 10_000,
    });
    const err = await failure(provider.completeChat(request, new AbortController().signal));
    const { log, lines, text } = capturedLogger();
    log.warn({ err }, "reply failed");
    expect(text()).not.toContain(SECRET);
    expect(JSON.parse(lines[0]!).err).toMatchObject({
      type: "ProviderError",
      code: "upstream_error",
      // An upstream's refusal (a 4xx other than 408/429) is answered with its own status (issue 13).
      status: 401,
      upstreamStatus: 401,
      cause: { type: "AuthenticationError", status: 401 },
    });
  });

  it("leave out the address a connection was refused at, keeping the code", async () => {
    const port = await freePort();
    const err = await failure(fetch(`http://127.0.0.1:${port}/${SECRET}`));
    const { log, lines, text } = capturedLogger();
    log.warn({ err }, "fetch failed");
    expect(text()).not.toContain(String(port));
    expect(text()).not.toContain(SECRET);
    expect(JSON.parse(lines[0]!).err).toMatchObject({ type: "TypeError", cause: { code: "ECONNREFUSED", syscall: "connect" } });
  });

  it("are made safe under any field, and given without a message do not lend theirs to the line", () => {
    const { log, lines, text } = capturedLogger();
    const err = new Error(`boom ${SECRET}`);
    log.warn({ failure: err }, "under another field");
    log.error(err);
    log.error({ err });
    expect(text()).not.toContain(SECRET);
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["under another field", "error", "error"]);
    expect(JSON.parse(lines[0]!).failure).toMatchObject({ type: "Error" });
  });

  it("keep the messages of Parley's own errors that are built from ids and codes only", () => {
    expect(logSafeError(new ConversationBusyError("msg_123"))).toMatchObject({
      type: "ConversationBusyError",
      code: "conversation_busy",
      message: expect.stringContaining("msg_123"),
    });
    // An invalid request can quote what the client sent.
    const invalid = logSafeError(new InvalidRequestError(`messages.0.content: ${SECRET}`, "messages"));
    expect(invalid).toMatchObject({ type: "InvalidRequestError", code: "invalid_request" });
    expect(JSON.stringify(invalid)).not.toContain(SECRET);
  });

  it("keep a Redis error's word, not the keys it names", () => {
    const logged = logSafeError(new ReplyError(`WRONGTYPE Operation against a key holding the wrong kind of value: ${SECRET}`));
    expect(logged).toMatchObject({ code: "WRONGTYPE" });
    expect(JSON.stringify(logged)).not.toContain(SECRET);
  });

  it("leave out codes that are not a driver's constants, and frames smuggled in a message", () => {
    const err = Object.assign(new Error(`x\n    at ${SECRET} (evil.js:1:1)`), { code: SECRET });
    expect(JSON.stringify(logSafeError(err))).not.toContain(SECRET);
  });
});
