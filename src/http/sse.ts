import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Logger } from "pino";
import type { ReplyEvent } from "../streams/reply-events.ts";

/**
 * Writes a reply's events as SSE: each with its stream id as `id:` and its
 * name as `event:`, a comment line every `heartbeatMs` while idle (proxies
 * close silent connections, and a write is how a gone client is noticed),
 * ending after `done`. Leaving early (client gone) stops the follow.
 */
export function replyEventsResponse(
  c: Context,
  opts: {
    follow: (signal: AbortSignal) => AsyncIterable<ReplyEvent>;
    heartbeatMs: number;
    log: Logger;
  },
): Response {
  return streamSSE(
    c,
    async (stream) => {
      const stop = new AbortController();
      stream.onAbort(() => stop.abort());
      const heartbeat = setInterval(() => {
        stream.write(": keep-alive\n\n").catch(() => stop.abort());
      }, opts.heartbeatMs);
      try {
        for await (const e of opts.follow(stop.signal)) {
          await stream.writeSSE({ id: e.id, event: e.event, data: e.data });
          if (stream.aborted) break;
        }
      } finally {
        clearInterval(heartbeat);
        stop.abort();
      }
    },
    async (err) => {
      if (err.name !== "AbortError") opts.log.warn({ err }, "SSE stream ended with an error");
    },
  );
}
