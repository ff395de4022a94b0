import { describe, expect, it } from "vitest";
import { type RecordedRequest } from "../support/fake-upstream.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/**
 * A stateless chat completion without an Idempotency-Key has no one to answer
 * once its client has gone: its upstream call is stopped. A keyed one runs on
 * (a retry with the key is answered with it).
 */

const ctx = useServiceWithFakeUpstream({
  overrides: {
    // One reply in flight per tenant: a completion left running would hold the tenant's only slot.
    MAX_CONCURRENT_REPLIES: 1,
  },
});

/** A reply that takes seconds to stream (40 tokens, 100 ms apart). */
const slowStream = { kind: "ok", replyTokens: 40, tokenDelayMs: 100 } as const;
/** An unstreamed answer that takes seconds to come. */
const slowAnswer = { kind: "ok", ttftMs: 4_000 } as const;

function startCompletion(stream: boolean, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const response = fetch(`${ctx.service.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TEST_API_KEY}`, ...headers },
    body: JSON.stringify({ model: "fake-model", messages: [{ role: "user", content: "take your time" }], stream }),
    signal: abort.signal,
  });
  response.catch(() => {}); // rejected by the abort, as intended
  return { abort: () => abort.abort(), response };
}

/** Reads a streamed answer until its first chunk with content: the reply is underway. */
async function untilFirstToken(response: Promise<Response>): Promise<void> {
  const res = await response;
  expect(res.status).toBe(200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/"content":"[^"]+"/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended before any content: ${seen}`);
    seen += value;
  }
}

/** The upstream request once its connection has closed, whichever way. */
const upstreamEnded = (): Promise<RecordedRequest> =>
  eventually(async () => (ctx.upstream.requests[0]?.endedAt !== undefined ? ctx.upstream.requests[0] : null), {
    what: "the upstream request to end",
    timeoutMs: 20_000,
  });

/** The tenant's reply slot is free again: a quick call goes through (MAX_CONCURRENT_REPLIES is 1). */
async function slotFreed(): Promise<void> {
  ctx.upstream.setBehaviour({ kind: "ok" });
  let last = "";
  await eventually(
    async () => {
      const res = await ctx.api.post("/chat/completions", { model: "fake-model", messages: [{ role: "user", content: "next" }] });
      last = `${res.status} ${JSON.stringify(res.body).slice(0, 200)}`;
      return res.status === 200;
    },
    { what: "the next call to get the tenant's slot", timeoutMs: 20_000 },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last answer: ${last}`);
  });
}

describe("a stateless call whose client leaves", () => {
  it("is stopped upstream when it streams and has no Idempotency-Key", async () => {
    ctx.upstream.setBehaviour(slowStream);
    const call = startCompletion(true);
    await untilFirstToken(call.response);
    call.abort();
    const request = await upstreamEnded();
    expect(request.closedEarly).toBe(true);
    await slotFreed();
  });

  it("is stopped upstream when it does not stream and has no Idempotency-Key", async () => {
    ctx.upstream.setBehaviour(slowAnswer);
    const call = startCompletion(false);
    await eventually(async () => ctx.upstream.requests.length === 1, { what: "the upstream to be asked", timeoutMs: 20_000 });
    call.abort();
    const request = await upstreamEnded();
    expect(request.closedEarly).toBe(true);
    expect(request.body.stream).toBe(false);
    await slotFreed();
  });

  it("runs to its end when it has an Idempotency-Key, and a retry with the key is answered with it", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 20, tokenDelayMs: 100 });
    const key = { "idempotency-key": `abandon-${Date.now()}` };
    const call = startCompletion(true, key);
    await untilFirstToken(call.response);
    call.abort();
    const request = await upstreamEnded();
    expect(request.closedEarly).toBe(false);
    // The same request again (same body, same key) is answered with the first call's reply, not a new call.
    const retried = await startCompletion(true, key).response;
    expect(retried.status).toBe(200);
    const text = await retried.text();
    const content = text
      .split("\n")
      .filter((line) => line.startsWith("data: {"))
      .map((line) => JSON.parse(line.slice("data: ".length)).choices?.[0]?.delta?.content ?? "")
      .join("");
    expect(content).toBe(Array.from({ length: 20 }, (_, i) => ` w${i}`).join(""));
    expect(ctx.upstream.requests).toHaveLength(1);
  });
});
