import { Redis } from "ioredis";
import { PgPreparedQuery, PgSession } from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postForEvents } from "../support/http.ts";
import { useTestService } from "../support/service.ts";

/**
 * What a turn costs in round trips, counted (not timed): the statements the
 * worker sends between taking a reply's job and calling the upstream, and the
 * reply-event writes per token. The service runs in this process, so its
 * Postgres statements and Redis commands are counted where they are sent.
 */
const statements: string[] = [];
// drizzle's protected hook through which every statement it sends passes.
type QueryHook = (this: unknown, query: string, ...rest: unknown[]) => unknown;
const preparedQuery = PgPreparedQuery.prototype as unknown as { queryWithCache: QueryHook };
const commands = new Map<string, number>();
const originals = {
  queryWithCache: preparedQuery.queryWithCache,
  transaction: PgSession.prototype.transaction,
  sendCommand: Redis.prototype.sendCommand,
};

beforeAll(() => {
  preparedQuery.queryWithCache = function (query, ...rest) {
    statements.push(query);
    return originals.queryWithCache.call(this, query, ...rest);
  };
  PgSession.prototype.transaction = function (this: PgSession, ...args: Parameters<PgSession["transaction"]>) {
    statements.push("BEGIN … COMMIT");
    return originals.transaction.apply(this, args);
  } as PgSession["transaction"];
  Redis.prototype.sendCommand = function (this: Redis, command, stream) {
    const name = (command as { name: string }).name;
    commands.set(name, (commands.get(name) ?? 0) + 1);
    return originals.sendCommand.call(this, command, stream);
  };
});
afterAll(() => {
  preparedQuery.queryWithCache = originals.queryWithCache;
  PgSession.prototype.transaction = originals.transaction;
  Redis.prototype.sendCommand = originals.sendCommand;
});

const ctx = useTestService();

const reset = () => {
  statements.length = 0;
  commands.clear();
};
const scriptCalls = () => (commands.get("evalsha") ?? 0) + (commands.get("eval") ?? 0);

describe("a turn's round trips", () => {
  it("reads the conversation and the history in two statements between taking the job and calling the upstream", async () => {
    const conv = (await ctx.api.post("/conversations", { system: "S" })).body;
    await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "warm up" });
    const turns = 10;
    const pickups: string[][] = [];
    let total = 0;
    for (let i = 0; i < turns; i++) {
      reset();
      const res = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: `turn ${i}`, params: { simulate: { reply_tokens: 5 } } });
      expect(res.body.reply.status).toBe("completed");
      total += statements.length;
      // From the attempt's start to the statement that stores the reply's end: what the worker read in between.
      const start = statements.findIndex((q) => q.includes('"attempt" + 1'));
      const end = statements.findIndex((q, at) => at > start && q.includes('"completed_at" = now()'));
      pickups.push(statements.slice(start, end));
    }
    console.log(`statements per turn (API and worker): ${total / turns}; worker before the upstream call: ${pickups[0]!.length}`);
    for (const pickup of pickups) expect(pickup).toHaveLength(2);
  });

  it("writes the tokens that arrive during a write together: fewer script calls than tokens", async () => {
    const conv = (await ctx.api.post("/conversations", {})).body;
    await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "warm up" });
    reset();
    const tokens = 400;
    const cpu = process.cpuUsage();
    // As fast as the simulator sends them: many arrive while a write is in flight.
    const res = await postForEvents(`${ctx.service.url}/v1/conversations/${conv.id}/messages`, {
      content: "many tokens",
      stream: true,
      params: { simulate: { reply_tokens: tokens, tokens_per_second: 1_000_000 } },
    });
    const deltas = res.events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content as string);
    const completed = JSON.parse(res.events.find((e) => e.event === "message.completed")!.data);
    // Still one event per token, in order, and the stored reply is what was streamed.
    expect(deltas.length).toBeGreaterThanOrEqual(tokens - 1);
    expect(completed.content).toBe(deltas.join(""));
    const used = process.cpuUsage(cpu);
    // Printed, not asserted: CPU time (API and worker, in this process) is a figure to compare, never a test.
    console.log(`script calls for ${tokens} tokens: ${scriptCalls()}; CPU per token: ${Math.round((used.user + used.system) / tokens)} µs`);
    expect(scriptCalls()).toBeLessThan(tokens / 2);
  });
});
