import { ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { Hono } from "hono";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { replyEventsResponse } from "../../src/http/sse.ts";
import { ReplyEventQueue } from "../../src/streams/reply-event-queue.ts";

let server: ServerType;
let url: string;
let queue: ReplyEventQueue;

beforeAll(async () => {
  const app = new Hono();
  app.get("/events", (c) => replyEventsResponse(c, { follow: () => queue, heartbeatMs: 60_000, log: pino({ level: "silent" }) }));
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("a reply's events as SSE", () => {
  it("are written with one write for the events that arrived together, each as its own SSE event", async () => {
    queue = new ReplyEventQueue(() => {});
    const data = (content: string) => JSON.stringify({ delta: { content } });
    for (const [i, c] of ["a", "b", "c"].entries()) queue.push({ id: `1-${i}`, event: "message.delta", data: data(c) });
    const write = vi.spyOn(ServerResponse.prototype, "write");
    try {
      const res = await fetch(url);
      const reader = res.body!.getReader();
      let text = "";
      const decoder = new TextDecoder();
      while (!text.includes("id: 1-2\n\n")) text += decoder.decode((await reader.read()).value);
      // Three events queued before the response started: one write.
      expect(write).toHaveBeenCalledTimes(1);
      queue.push({ id: "2-0", event: "message.delta", data: "multi\nline" });
      queue.push({ id: "2-1", event: "done", data: "[DONE]" });
      queue.end();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value);
      }
      expect(write).toHaveBeenCalledTimes(2);
      expect(text).toBe(
        `event: message.delta\ndata: ${data("a")}\nid: 1-0\n\n` +
          `event: message.delta\ndata: ${data("b")}\nid: 1-1\n\n` +
          `event: message.delta\ndata: ${data("c")}\nid: 1-2\n\n` +
          "event: message.delta\ndata: multi\ndata: line\nid: 2-0\n\n" +
          "event: done\ndata: [DONE]\nid: 2-1\n\n",
      );
    } finally {
      write.mockRestore();
    }
  });
});
