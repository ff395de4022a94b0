import { expect } from "vitest";
import { CHAOS_SECRET } from "./secret.ts";
import { conversations, eventually, question, replyRows, request, scenario, sleep } from "./harness.ts";

/**
 * Issue 12, secrets and content in logs: every failure path run with a known
 * secret as the upstream's API key, in message content and in the upstream's
 * error text. Done means no process logs it, and no error shown to a client
 * carries it as a key. (The runner also searches every other scenario's logs.)
 */
scenario("logs: upstream errors, drops, timeouts and a failed final write never log the secret", { timeoutMs: 120_000 }, async (c) => {
  const env = { UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "2000", UPSTREAM_MAX_RETRIES: "1", LOG_LEVEL: "debug" };
  const api = await c.start("api", { via: { pg: true }, env });
  await c.start("worker", { via: { pg: true }, env });
  const upstreamError = (status: number) => ({
    kind: "status" as const,
    status,
    body: { error: { message: `Incorrect API key provided: ${CHAOS_SECRET}. Upstream at 10.0.0.7:8443.`, type: "invalid_request_error", param: null, code: "invalid_api_key" } },
  });
  const turns: { what: string; behaviour: Parameters<typeof c.upstream.setBehaviour>[0] }[] = [
    { what: "upstream 401", behaviour: upstreamError(401) },
    { what: "upstream 500 (retried)", behaviour: upstreamError(500) },
    { what: "upstream 400", behaviour: upstreamError(400) },
    { what: "upstream drops mid-stream", behaviour: { kind: "drop", afterTokens: 3 } },
    { what: "upstream never answers", behaviour: { kind: "hang" } },
  ];
  const convs = await conversations(api.api, turns.length);
  const answers = [];
  for (const [i, t] of turns.entries()) {
    c.upstream.setBehaviour(t.behaviour);
    answers.push(await request(api.url, "POST", `/conversations/${convs[i]}/messages`, { content: question(i, 5) }, 30_000));
  }

  // A final write that fails: Postgres cut as replies finish (the write's parameters hold the content).
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 50 });
  const more = await conversations(api.api, 5);
  await Promise.all(more.map((id, i) => request(api.url, "POST", `/conversations/${id}/messages`, { content: question(10 + i, 20), wait: false }, 30_000)));
  await eventually("the model calls started", 20_000, async () => (c.upstream.requests.length >= turns.length + 5 ? true : null));
  await sleep(900);
  await c.pgProxy.cut();
  await sleep(3000);
  await c.pgProxy.restore();
  await eventually("every reply ended", 40_000, async () => {
    const rows = await replyRows(c);
    return [...rows.values()].every((r) => !["queued", "in_progress"].includes(r.status)) ? true : null;
  }).catch(() => {});

  const leaking = Object.entries(c.outputs())
    .filter(([, out]) => out.includes(CHAOS_SECRET))
    .map(([name, out]) => `${name}: ${out.split("\n").filter((l) => l.includes(CHAOS_SECRET)).length} lines`);
  const shown = answers.filter((a) => JSON.stringify(a.body ?? "").includes(`Incorrect API key provided: ${CHAOS_SECRET}`));
  c.note(`answers: ${answers.map((a, i) => `${turns[i]!.what} → ${a.status ?? a.error} ${a.body?.reply?.error?.code ?? a.body?.error?.code ?? ""}`).join("; ")}`);
  expect(leaking).toEqual([]);
  expect(shown.map((a) => JSON.stringify(a.body).slice(0, 200))).toEqual([]);
});
