import { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Logger } from "pino";
import { relayLagMeter } from "../observability/http.ts";
import { eventBatches } from "../streams/reply-event-queue.ts";
import type { ReplyEvent } from "../streams/reply-events.ts";

/** What a handler writes an SSE response with: Hono's SSEStreamingApi has the same shape. */
export interface SseStream {
  writeSSE(message: { data: string; event?: string; id?: string }): Promise<unknown>;
  /** Raw text (a `: comment` line). Never rejects: a gone client shows as `aborted`. */
  write(text: string): Promise<unknown>;
  readonly aborted: boolean;
  onAbort(listener: () => void): void;
}

const SSE_HEADERS = {
  "Transfer-Encoding": "chunked",
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache",
  Connection: "keep-alive",
};

const hasLineBreak = (text: string) => text.includes("\n") || text.includes("\r");

function sseMessage(message: { data: string; event?: string; id?: string }): string {
  if ((message.event && hasLineBreak(message.event)) || (message.id && hasLineBreak(message.id))) {
    throw new Error('event and id must not contain "\\r" or "\\n"');
  }
  let text = message.event ? `event: ${message.event}\n` : "";
  // JSON (almost every event's data) has no line breaks: no split for it.
  const data = hasLineBreak(message.data) ? message.data.split(/\r\n|\r|\n/).join("\ndata: ") : message.data;
  text += `data: ${data}\n`;
  if (message.id !== undefined) text += `id: ${message.id}\n`;
  return `${text}\n`;
}

/** Writes straight to Node's response: each write one socket write, waiting only when the socket's buffer is full. */
class NodeSseStream implements SseStream {
  readonly #out: ServerResponse;
  readonly #onAbort: (() => void)[] = [];
  aborted = false;

  constructor(out: ServerResponse) {
    this.#out = out;
    out.once("close", () => {
      if (!out.writableFinished) this.#abort();
    });
  }

  onAbort(listener: () => void): void {
    this.#onAbort.push(listener);
  }

  writeSSE(message: { data: string; event?: string; id?: string }): Promise<void> {
    return this.write(sseMessage(message));
  }

  write(text: string): Promise<void> {
    const out = this.#out;
    if (this.aborted || out.writableEnded || out.destroyed) return Promise.resolve();
    if (out.write(text)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        out.off("drain", done);
        out.off("close", done);
        resolve();
      };
      out.on("drain", done);
      out.on("close", done);
    });
  }

  end(): void {
    if (!this.#out.writableEnded) this.#out.end();
  }

  #abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const listener of this.#onAbort.splice(0)) {
      try {
        listener();
      } catch {
        // as Hono's stream: a listener's failure does not stop the others
      }
    }
  }
}

/**
 * An SSE response written by `run`. Served by @hono/node-server (every
 * deployment), it writes to Node's response itself: Hono's streamSSE puts
 * each stream through a TransformStream, a ReadableStream and their readers
 * (~140 closures a stream), which weighs on an API holding thousands. Elsewhere
 * (app.request in tests) it is streamSSE. Either way: the headers the context
 * holds, an `error` event after `onError` when `run` throws, then the end.
 */
export function sseResponse(
  c: Context,
  run: (stream: SseStream) => Promise<void>,
  onError: (err: Error) => Promise<void> | void,
): Response {
  const outgoing = (c.env as { outgoing?: unknown } | undefined)?.outgoing;
  if (!(outgoing instanceof ServerResponse)) return streamSSE(c, run, async (err) => onError(err));
  const headers = c.newResponse(null, 200, SSE_HEADERS).headers;
  outgoing.writeHead(200, Object.fromEntries(headers));
  outgoing.flushHeaders();
  const stream = new NodeSseStream(outgoing);
  void (async () => {
    try {
      await run(stream);
    } catch (err) {
      if (err instanceof Error) {
        await onError(err);
        await stream.writeSSE({ event: "error", data: err.message });
      } else console.error(err);
    } finally {
      stream.end();
    }
  })();
  return RESPONSE_ALREADY_SENT;
}

type SseMessage = Parameters<SseStream["writeSSE"]>[0];

/**
 * Writes a reply's events as SSE: each with its stream id as `id:` and its
 * name as `event:` (or as `translate` makes it: another dialect's events),
 * a comment line every `heartbeatMs` while idle (proxies close silent
 * connections, and a write is how a gone client is noticed), ending after
 * `done` (or once `until` says the translation has ended). Leaving early
 * (client gone) stops the follow.
 */
export function replyEventsResponse(
  c: Context,
  opts: {
    follow: (signal: AbortSignal) => AsyncIterable<ReplyEvent>;
    heartbeatMs: number;
    log: Logger;
    translate?: (e: ReplyEvent) => Iterable<SseMessage>;
    until?: () => boolean;
  },
): Response {
  const translate = opts.translate ?? ((e: ReplyEvent) => [{ id: e.id, event: e.event, data: e.data }]);
  const relayed = relayLagMeter(c.get("relayLag"));
  return sseResponse(
    c,
    async (stream) => {
      const stop = new AbortController();
      stream.onAbort(() => stop.abort());
      const heartbeat = setInterval(() => {
        stream.write(": keep-alive\n\n").catch(() => stop.abort());
      }, opts.heartbeatMs);
      try {
        // The events that arrived together go out in one write (one socket write, not one per event).
        for await (const batch of eventBatches(opts.follow(stop.signal))) {
          let text = "";
          let last = false;
          try {
            for (const e of batch) {
              for (const message of translate(e)) text += sseMessage(message);
              if ((last = stream.aborted || (opts.until?.() ?? false))) break;
            }
          } finally {
            if (text) await stream.write(text);
          }
          relayed(batch);
          if (last || stream.aborted) break;
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
