import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UpstreamConfig } from "../../src/config.ts";
import { chatCompletionPayloads, UpstreamStreamFormatError } from "../../src/providers/chat-completion-events.ts";
import { createOpenAICompatibleProvider } from "../../src/providers/openai-compatible.ts";
import { ProviderError, type ChatChunk, type ChatProvider } from "../../src/providers/types.ts";
import { piecesOf, splitAt, startRawUpstream, type RawUpstream } from "./raw-upstream.ts";

/**
 * The upstream's event stream, read the way the WHATWG "server-sent events"
 * interpretation allows it to be written: each shape below is one way a
 * server may legally send the same reply. Over real HTTP, in small reads.
 */

let raw: RawUpstream;
let provider: ChatProvider;

const config = (u: Partial<UpstreamConfig> = {}): UpstreamConfig => ({
  name: "raw",
  base_url: raw.baseURL,
  api_key: "sk-raw-test-key",
  models: ["m"],
  strip_prefix: true,
  timeout_ms: 20_000,
  ...u,
});

beforeAll(async () => {
  raw = await startRawUpstream();
  provider = createOpenAICompatibleProvider(config());
});
afterAll(() => raw?.close());

const request = { model: "m", messages: [{ role: "user" as const, content: "hi" }], params: {} };

// Multi-byte characters of 2, 3 and 4 bytes, so some reads end inside one.
const DELTAS = ["Héllo", " wörld 🌍", " 日本"];
const USAGE = { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 };
// Chunks carry only what the provider reads, to keep the bodies (and the every-boundary loops) short.
const chunk = (delta: object, finish: string | null = null) => ({ choices: [{ index: 0, delta, finish_reason: finish }] });
/** The reply's payloads, in order: a role chunk, the deltas, the finish (`length`, not the default), the usage. */
const PAYLOADS: object[] = [
  chunk({ role: "assistant", content: "" }),
  ...DELTAS.map((content) => chunk({ content })),
  chunk({}, "length"),
  { choices: [], usage: USAGE },
];
const event = (payload: object | string, lead = "") =>
  `${lead}data: ${typeof payload === "string" ? payload : JSON.stringify(payload)}\n\n`;
const plain = PAYLOADS.map((p) => event(p)).join("") + event("[DONE]");

/** Every shape the event-stream format allows for the same reply; each must read as DELTAS, `length`, USAGE. */
const SHAPES: Record<string, string> = {
  "plain LF events": plain,
  // The bug: an event with no data (`event: ping`) was handed to JSON.parse.
  "data-less ping events": PAYLOADS.map((p) => `event: ping\n\n${event(p)}event: ping\ndata:\n\nevent: ping\ndata: \n\n`).join("") + event("[DONE]"),
  "data-less unnamed events (a data line with nothing after it)": PAYLOADS.map((p) => `data:\n\n${event(p)}`).join("") + event("[DONE]"),
  "comments": `: keepalive\n\n${PAYLOADS.map((p) => `:\n: ping ${"x".repeat(10)}\n${event(p)}: keepalive\n\n`).join("")}${event("[DONE]")}`,
  "retry and id fields": `retry: 3000\n\n${PAYLOADS.map((p, i) => `id: ${i}\nretry: 10\n${event(p)}`).join("")}id\n${event("[DONE]")}`,
  "CRLF line ends": plain.replaceAll("\n", "\r\n"),
  "lone CR line ends": plain.replaceAll("\n", "\r"),
  "mixed line ends": PAYLOADS.map((p, i) => event(p).replace(/\n\n$/, ["\r\n\n", "\n\r\n", "\r\r", "\r\n\r\n"][i % 4]!)).join("") + event("[DONE]"),
  // JSON pretty-printed over several data lines: joined with \n it is the same JSON.
  "multi-line data": PAYLOADS.map((p) => `${JSON.stringify(p, null, 1).split("\n").map((line) => `data: ${line}\n`).join("")}\n`).join("") + event("[DONE]"),
  "a BOM at the start": `\uFEFF${plain}`,
  "no space after the colon": plain.replaceAll("data: ", "data:"),
  "an explicit `event: message` and an empty event name": PAYLOADS.map((p, i) => `${i % 2 ? "event: message" : "event:"}\n${event(p)}`).join("") + event("[DONE]"),
  "events of unknown names, skipped": PAYLOADS.map(
    (p) => `event: metrics\ndata: ${JSON.stringify(chunk({ content: "NOT CONTENT" }))}\n\nevent: status\ndata: queued\n\n${event(p)}`,
  ).join("") + event("[DONE]"),
  "unknown fields": PAYLOADS.map((p) => `foo: bar\nbaz\n${event(p)}`).join("") + event("[DONE]"),
  "no [DONE], no blank line at the end": plain.slice(0, plain.indexOf("data: [DONE]")),
  "keep-alives after [DONE]": `${plain}: keepalive\n\ndata: ${JSON.stringify(chunk({ content: "after done" }))}\n\n`,
};

const bytes = (text: string) => new TextEncoder().encode(text);

async function drain(iter: AsyncIterable<ChatChunk>) {
  const deltas: string[] = [];
  const finishes: ChatChunk[] = [];
  let error: unknown;
  try {
    for await (const c of iter) {
      if (c.type !== "delta") finishes.push(c);
      else if (c.content !== undefined) deltas.push(c.content);
    }
  } catch (err) {
    error = err;
  }
  return { deltas, finishes, error };
}

async function replyFrom(parts: (string | Uint8Array)[]) {
  raw.answer({ parts });
  return drain(provider.streamChat(request, new AbortController().signal));
}

/** A body of `parts`, each its own read, as fetch hands them over. */
function bodyOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const p of parts) controller.enqueue(p);
      controller.close();
    },
  });
}

async function payloadsOf(parts: Uint8Array[]): Promise<unknown[]> {
  const payloads: unknown[] = [];
  for await (const p of chatCompletionPayloads(bodyOf(parts))) payloads.push(p);
  return payloads;
}

describe("reading an upstream's event stream over HTTP", () => {
  for (const [shape, text] of Object.entries(SHAPES)) {
    it(`reads ${shape}, sent in 16-byte reads`, async () => {
      const { deltas, finishes, error } = await replyFrom(piecesOf(bytes(text), 16));
      expect(error).toBeUndefined();
      expect(deltas).toEqual(DELTAS);
      expect(finishes).toEqual([{ type: "finish", choice: 0, finishReason: "length", usage: USAGE }]);
    });
  }

  it("reads a reply split at every byte boundary (CRLF, a BOM, pings, multi-byte characters)", async () => {
    const pingThenEvent = PAYLOADS.map((p) => `event: ping\n\n${event(p)}`).join("") + event("[DONE]");
    const body = bytes(`\uFEFF${pingThenEvent.replaceAll("\n", "\r\n")}`);
    const failures: number[] = [];
    for (let at = 1; at < body.length; at++) {
      const { deltas, finishes, error } = await replyFrom(splitAt(body, at));
      const ok = error === undefined && deltas.join("") === DELTAS.join("") && finishes.length === 1;
      if (!ok) failures.push(at);
    }
    expect(failures).toEqual([]);
  });

  it("reads a reply sent one byte at a time", async () => {
    const { deltas, finishes, error } = await replyFrom(piecesOf(bytes(SHAPES["mixed line ends"]!), 1));
    expect(error).toBeUndefined();
    expect(deltas.join("")).toBe(DELTAS.join(""));
    expect(finishes).toEqual([{ type: "finish", choice: 0, finishReason: "length", usage: USAGE }]);
  });

  it("ends with the upstream's error, keeping the deltas before it, on `event: error` as OpenAI sends it", async () => {
    const text =
      event(PAYLOADS[0]!) +
      event(PAYLOADS[1]!) +
      `event: error\ndata: ${JSON.stringify({ error: { message: "The server is overloaded.", type: "server_error", code: null } })}\n\n` +
      event(PAYLOADS[2]!);
    const { deltas, finishes, error } = await replyFrom(piecesOf(bytes(text), 5));
    expect(deltas).toEqual(DELTAS.slice(0, 1));
    expect(finishes).toEqual([]);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_error", status: 502, upstreamStatus: null });
    expect((error as Error).message).toBe("upstream raw reported an error mid-stream: The server is overloaded.");
  });

  it("ends with the upstream's error on a data payload carrying `error`, or an error event that is not JSON", async () => {
    const inData = await replyFrom([event(PAYLOADS[1]!), event({ error: { message: "context too long" } })]);
    expect(inData.deltas).toEqual(DELTAS.slice(0, 1));
    expect((inData.error as Error).message).toBe("upstream raw reported an error mid-stream: context too long");

    const notJson = await replyFrom([`event: error\ndata: upstream fell over\n\n`]);
    expect(notJson.error).toMatchObject({ code: "upstream_error" });
    expect((notJson.error as Error).message).toBe("upstream raw reported an error mid-stream: upstream fell over");
  });

  it("fails a data payload that is not JSON as an upstream error, keeping what came before", async () => {
    const { deltas, error } = await replyFrom([event(PAYLOADS[1]!), "data: {not json\n\n"]);
    expect(deltas).toEqual(DELTAS.slice(0, 1));
    expect(error).toMatchObject({ code: "upstream_error", status: 502 });
    expect((error as Error).message).toBe("upstream raw sent a reply that is not valid JSON");
  });

  it("refuses an event longer than the limit instead of buffering it", async () => {
    const { error } = await replyFrom([event(PAYLOADS[1]!), `data: "${"x".repeat(5 * 1024 * 1024)}`]);
    expect(error).toMatchObject({ code: "upstream_error" });
    expect((error as Error).message).toBe("upstream raw sent an event too large");
  });
});

describe("chatCompletionPayloads", () => {
  const expected = [...PAYLOADS];

  it("reads every shape split at every byte boundary into the same payloads", async () => {
    const failures: string[] = [];
    for (const [shape, text] of Object.entries(SHAPES)) {
      const body = bytes(text);
      for (let at = 0; at <= body.length; at++) {
        const got = await payloadsOf(splitAt(body, at));
        if (JSON.stringify(got) !== JSON.stringify(expected)) failures.push(`${shape} @${at}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("reads every shape split into three at a sample of boundaries, CR and LF apart included", async () => {
    const failures: string[] = [];
    for (const [shape, text] of Object.entries(SHAPES)) {
      const body = bytes(text);
      for (let a = 1; a < body.length; a += 13) {
        for (const b of [a + 1, a + 2, a + 5]) {
          if (b >= body.length) continue;
          const got = await payloadsOf(splitAt(body, a, b));
          if (JSON.stringify(got) !== JSON.stringify(expected)) failures.push(`${shape} @${a},${b}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it("says an event is too large rather than buffering without end", async () => {
    const endless = bytes(`data: ${"y".repeat(64 * 1024)}`);
    const parts = Array.from({ length: 80 }, () => endless);
    await expect(payloadsOf(parts)).rejects.toBeInstanceOf(UpstreamStreamFormatError);
  });
});
