import { describe, expect, it } from "vitest";
import { StorableTextStream } from "../../src/domain/storable-text.ts";
import { authedFetch, readEvents } from "../support/http.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/**
 * Whatever text an upstream streams, the reply ends, and what is stored is
 * exactly what followers were sent: Postgres cannot hold NUL or a lone
 * surrogate, so both become U+FFFD before a delta is streamed.
 */

const ctx = useServiceWithFakeUpstream();

async function streamedTurn(tokens: string[]) {
  ctx.upstream.setBehaviour({ kind: "ok", tokens });
  const { body: conv } = await ctx.api.post("/conversations", { model: "fake-model" });
  const res = await authedFetch(`${ctx.service.url}/v1/conversations/${conv.id}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ content: "say something odd", stream: true }),
    signal: AbortSignal.timeout(30_000),
  });
  const { events } = await readEvents(res);
  const streamed = events
    .filter((e) => e.event === "message.delta")
    .map((e) => JSON.parse(e.data).delta.content as string)
    .join("");
  const [row] = await ctx.service.sql`select status, content from messages where conversation_id = ${conv.id} and role = 'assistant'`;
  return { events, streamed, row };
}

describe("text a model streams that Postgres cannot store", () => {
  it("ends the reply with NUL and lone surrogates replaced, stored exactly as streamed", async () => {
    const { events, streamed, row } = await streamedTurn(["a\u0000b", " lone \ud800 high", " and \udc00 low", " end\ud800"]);
    expect(events.at(-2)?.event).toBe("message.completed");
    expect(row).toMatchObject({ status: "completed" });
    expect(row?.content).toBe("a\uFFFDb lone \uFFFD high and \uFFFD low end\uFFFD");
    expect(streamed).toBe(row?.content);
    expect(JSON.parse(events.at(-2)!.data).content).toBe(row?.content);
  });

  it("keeps a surrogate pair split across two deltas intact", async () => {
    const { streamed, row } = await streamedTurn(["smile \ud83d", "\ude00 and go", "\ud83d", "\ude01"]);
    expect(row).toMatchObject({ status: "completed", content: "smile \u{1F600} and go\u{1F601}" });
    expect(streamed).toBe(row?.content);
  });
});

describe("StorableTextStream", () => {
  it.each([
    [["ab", "cd"], "abcd"],
    [["a\u0000"], "a\uFFFD"],
    [["\ud83d", "\ude00"], "\u{1F600}"],
    [["x\ud83d"], "x\uFFFD"],
    [["\ud83d", "y"], "\uFFFDy"],
    [["\ude00", "z"], "\uFFFDz"],
    [["\ud83d\ud83d", "\ude00"], "\uFFFD\u{1F600}"],
  ])("turns deltas %j into %j", (deltas, expected) => {
    const text = new StorableTextStream();
    const out = deltas.map((d) => text.push(d)).join("") + text.end();
    expect(out).toBe(expected);
    expect(out.isWellFormed() && !out.includes("\u0000")).toBe(true);
  });
});
