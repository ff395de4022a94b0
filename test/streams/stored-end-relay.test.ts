import { Readable } from "node:stream";
import { Hono } from "hono";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { chatCompletionStreamResponse } from "../../src/http/chat-completions/relay.ts";
import { lostCompletionEnd } from "../../src/http/reply-follow.ts";
import type { ModelJobQueue } from "../../src/queue/completions.ts";
import type { ReplyEvent } from "../../src/streams/reply-events.ts";
import { readEvents } from "../support/http.ts";

/** What a follower gets when its reply ended from the stored row, as the relays and checks see it. */

const silent = pino({ level: "silent" });
const end = (content: string): ReplyEvent => ({
  id: "20-1",
  event: "message.completed",
  data: JSON.stringify({ status: "completed", content, finish_reason: "stop", usage: null, error: null }),
});

async function relay(events: ReplyEvent[]) {
  const app = new Hono().get("/", (c) =>
    chatCompletionStreamResponse(c, { follow: () => Readable.from(events), id: "chatcmpl_x", model: "m", created: 1, heartbeatMs: 10_000, log: silent }),
  );
  const res = await app.request("/");
  return (await readEvents(res)).events.map((e) => e.data);
}

describe("a chat-completions stream whose reply ended from the stored row", () => {
  it("sends the content the end has beyond what was streamed, then the last chunk and [DONE]", async () => {
    const data = await relay([
      { id: "10-0", event: "message.delta", data: JSON.stringify({ delta: { content: "Hel" } }) },
      end("Hello, world"),
      { id: "20-2", event: "done", data: "[DONE]" },
    ]);
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.map((c) => c.choices[0].delta.content ?? null)).toEqual(["Hel", "lo, world", null]);
    expect(chunks.at(-1).choices[0].finish_reason).toBe("stop");
    expect(data.at(-1)).toBe("[DONE]");
  });

  it("sends nothing twice when it had streamed it all", async () => {
    const data = await relay([
      { id: "10-0", event: "message.delta", data: JSON.stringify({ delta: { content: "Hello" } }) },
      end("Hello"),
      { id: "20-2", event: "done", data: "[DONE]" },
    ]);
    const contents = data.slice(0, -1).map((d) => JSON.parse(d).choices[0].delta.content ?? null);
    expect(contents).toEqual(["Hello", null]);
  });
});

describe("a stateless completion whose events stop", () => {
  const queue = (pending: boolean) => ({ isPending: async () => pending }) as unknown as ModelJobQueue;

  it("is still in flight while its job can run", async () => {
    expect(await lostCompletionEnd(queue(true), "chatcmpl_a")()).toBeNull();
  });

  it("ends failed completion_lost once its job is gone", async () => {
    const ended = await lostCompletionEnd(queue(false), "chatcmpl_a")();
    expect(ended?.event).toBe("message.failed");
    expect(JSON.parse(ended!.data)).toMatchObject({ id: "chatcmpl_a", status: "failed", error: { code: "completion_lost" } });
  });
});
