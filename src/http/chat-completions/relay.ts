import type { Context } from "hono";
import type { Logger } from "pino";
import { eventValue } from "../../domain/stateless-completions.ts";
import { terminalEventNames, type ReplyEvent } from "../../streams/reply-events.ts";
import { errorBody, ReplyFailedError, sendError, type ReplyFailure } from "../errors.ts";
import { relayLagMeter } from "../../observability/http.ts";
import { sseResponse, type SseStream } from "../sse.ts";
import { choicesOf, chunkDelta, chunkLogprobs, type DeltaEventData, type ReplyEndChoices } from "./choices.ts";
import { chatCompletion, chatCompletionChunk, type ChunkDelta } from "./wire.ts";

/** What every end event carries, a conversation reply's or a stateless completion's. */
interface ReplyEnd extends ReplyEndChoices {
  status: "completed" | "failed" | "cancelled";
  error: ReplyFailure | null;
}

export interface RelayOptions {
  /** The reply's events from the start; stops following when the signal aborts. */
  follow: (signal: AbortSignal) => AsyncIterable<ReplyEvent>;
  id: string;
  model: string;
  created: number;
  heartbeatMs: number;
  log: Logger;
}

/** Why a relay stops following once it has answered: made once (an abort without a reason builds a DOMException each time). */
const RELAY_OVER = new DOMException("The relay is over.", "AbortError");

/** One `data:` event of a JSON value: JSON text holds no line break, so it is one line as it is. */
const writeData = (stream: SseStream, value: unknown) => stream.write(`data: ${JSON.stringify(value)}\n\n`);

/** A reply that failed before its first token, as an HTTP error: the upstream's own 4xx when it refused the request. */
function failureResponse(c: Context, end: ReplyEnd, log: Logger): Response {
  const error = end.error ?? { message: `The reply was ${end.status}.`, type: "server_error", code: end.status };
  return sendError(c, new ReplyFailedError(error), log);
}

/** Waits for the end and answers with one `chat.completion` object, or the error it ended with. */
export async function chatCompletionResponse(c: Context, opts: RelayOptions): Promise<Response> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  c.req.raw.signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const e of opts.follow(stop.signal)) {
      if (!terminalEventNames.has(e.event)) continue;
      const end = eventValue(e) as ReplyEnd;
      if (end.status !== "completed") return failureResponse(c, end, opts.log);
      return c.json(
        chatCompletion({ ...opts, choices: choicesOf(end), usage: end.usage }),
        200,
      );
    }
  } finally {
    c.req.raw.signal.removeEventListener("abort", onAbort);
    stop.abort(RELAY_OVER);
  }
  return c.json(errorBody("The client went away.", "invalid_request_error", null, "client_closed"), 400);
}

/**
 * Streams `chat.completion.chunk`s and `[DONE]`. The HTTP status is decided
 * by the first token: a model that fails before it answers with an error
 * status (what SDKs turn into typed errors), not a 200 stream; failures after
 * it arrive as an `{"error":…}` chunk, as the hosted APIs send them. A reply
 * slower than the heartbeat interval to start gets its 200 then, so idle
 * proxies see bytes.
 */
export async function chatCompletionStreamResponse(c: Context, opts: RelayOptions): Promise<Response> {
  const stop = new AbortController();
  c.req.raw.signal.addEventListener("abort", () => stop.abort(), { once: true });
  const relayed = relayLagMeter(c.get("relayLag"));
  const events = opts.follow(stop.signal)[Symbol.asyncIterator]();
  const buffered: ReplyEvent[] = [];
  let pending: Promise<IteratorResult<ReplyEvent>> | null = events.next();
  const waitLimit = new Promise<"slow">((resolve) => setTimeout(resolve, opts.heartbeatMs, "slow").unref());
  while (pending) {
    const next: IteratorResult<ReplyEvent> | "slow" = await Promise.race([pending, waitLimit]);
    if (next === "slow") break;
    pending = next.done ? null : events.next();
    if (next.done) break;
    buffered.push(next.value);
    if (next.value.event === "message.delta") break;
    if (terminalEventNames.has(next.value.event)) {
      const end = eventValue(next.value) as ReplyEnd;
      if (end.status === "failed" && !end.content) {
        stop.abort();
        return failureResponse(c, end, opts.log);
      }
      break;
    }
  }

  async function* rest(): AsyncGenerator<ReplyEvent> {
    yield* buffered;
    while (pending) {
      const next = await pending;
      if (next.done) return;
      pending = events.next();
      yield next.value;
    }
  }

  return sseResponse(
    c,
    async (stream) => {
      stream.onAbort(() => stop.abort());
      const heartbeat = setInterval(() => stream.write(": keep-alive\n\n").catch(() => stop.abort()), opts.heartbeatMs);
      /** The choices that have had a chunk: the first of each says the role. */
      const started = new Set<number>();
      let first = true;
      /** The content the client has been sent (the first choice's): a reply that ended from its stored row may hold more. */
      let sent = "";
      const sendDelta = async (index: number, given: ChunkDelta, logprobs: unknown = null) => {
        const delta: ChunkDelta = started.has(index) ? given : { role: "assistant", ...given };
        started.add(index);
        first = false;
        if (index === 0) sent += given.content ?? "";
        await writeData(stream, chatCompletionChunk({ ...opts, index, delta, logprobs, finishReason: null }));
      };
      try {
        for await (const e of rest()) {
          if (e.event === "message.delta") {
            const data = eventValue(e) as DeltaEventData;
            await sendDelta(data.choice ?? 0, chunkDelta(data.delta), chunkLogprobs(data.delta.logprobs));
          } else if (e.event === "message.reset" && !first) {
            // The chat-completions format cannot take back what it sent: say so and stop.
            const error = errorBody(
              "The worker generating this reply was lost after it had started; the reply is being generated again.",
              "server_error",
              null,
              "reply_restarted",
            );
            await writeData(stream, error);
            break;
          } else if (terminalEventNames.has(e.event)) {
            const end = eventValue(e) as ReplyEnd;
            if (end.content.length > sent.length && end.content.startsWith(sent)) {
              await sendDelta(0, { content: end.content.slice(sent.length) });
            }
            if (end.status === "completed") {
              // Each choice's finish; the usage (of the whole call) with the last.
              const choices = choicesOf(end);
              for (const [i, choice] of choices.entries()) {
                const last = i === choices.length - 1;
                const chunk = chatCompletionChunk({
                  ...opts,
                  index: choice.index,
                  delta: {},
                  finishReason: choice.finishReason ?? "stop",
                  ...(last ? { usage: end.usage } : {}),
                });
                await writeData(stream, chunk);
              }
              await stream.write("data: [DONE]\n\n");
            } else {
              const error = end.error ?? { message: `The reply was ${end.status}.`, type: "server_error", code: end.status };
              await writeData(stream, errorBody(error.message, error.type, error.param ?? null, error.code));
            }
            break;
          }
          relayed([e]);
          if (stream.aborted) break;
        }
      } finally {
        clearInterval(heartbeat);
        stop.abort(RELAY_OVER);
      }
    },
    async (err) => {
      opts.log.warn({ err }, "chat completion stream ended with an error");
    },
  );
}
