import { createParser, type EventSourceMessage, type ParseError } from "eventsource-parser";

/**
 * Reading an upstream's chat-completions stream (server-sent events) into the
 * JSON payloads it carries.
 *
 * Not the SDK's own reader: it hands every event to JSON.parse, so a data-less
 * or empty event (`event: ping`, as some servers send) failed the reply, and it
 * keeps neither a leading BOM nor an unknown event out. eventsource-parser
 * implements the WHATWG event-stream interpretation (CR, LF and CRLF line ends,
 * comments, `retry:`/`id:` fields, multi-line `data:` joined with \n, events
 * split anywhere across reads); TextDecoder (streaming) joins UTF-8 characters
 * split across reads and drops a leading BOM. Both are driven from one reader
 * loop rather than piped through their TransformStreams: two streams, their
 * promises and the decoder's terminate error per call cost a third of the
 * provider's CPU for a short reply.
 */

/** The longest line or event the upstream may send; a hostile upstream could otherwise fill memory. */
export const MAX_UPSTREAM_EVENT_CHARS = 4 * 1024 * 1024;

/** The upstream said, inside its stream, that the call failed (`event: error`, or a payload with `error`). */
export class UpstreamErrorEvent extends Error {
  /** What it sent: the `error` object, or the whole payload (a string when it was not JSON). */
  readonly payload: unknown;
  constructor(payload: unknown) {
    super("the upstream sent an error event");
    this.name = "UpstreamErrorEvent";
    this.payload = payload;
  }
}

/** The upstream's stream broke the chat-completions format: an event that is not JSON, or one too large. */
export class UpstreamStreamFormatError extends Error {
  readonly kind: "not_json" | "too_large";
  constructor(kind: "not_json" | "too_large") {
    super(kind === "not_json" ? "an event's data is not JSON" : `an event is longer than ${MAX_UPSTREAM_EVENT_CHARS} characters`);
    this.name = "UpstreamStreamFormatError";
    this.kind = kind;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function parseJson(data: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(data) };
  } catch {
    return { ok: false };
  }
}

/**
 * The JSON payloads of the stream, in order, until `[DONE]` or the end of the
 * body. Skipped: comments, events without data or with blank data, and events
 * named anything but `message` (the default) or `error`: chat completions are
 * sent unnamed, so a named event is a server's extension we do not know.
 * Throws UpstreamErrorEvent or UpstreamStreamFormatError; a failed read (a cut
 * connection, an abort) is rethrown as it came.
 */
export async function* chatCompletionPayloads(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown, void, undefined> {
  const events: EventSourceMessage[] = [];
  let tooLarge = false;
  const parser = createParser({
    onEvent: (event) => events.push(event),
    // The parser's other errors (a bad `retry:`, an unknown field) are skipped, as the stream parser skips them.
    onError: (err: ParseError) => {
      if (err.type === "max-buffer-size-exceeded") tooLarge = true;
    },
    maxBufferSize: MAX_UPSTREAM_EVENT_CHARS,
  });
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let ended = false;
  try {
    for (;;) {
      // A failed read (a cut connection, an abort) is rethrown as it came.
      const read = await reader.read();
      ended = read.done;
      const text = read.done ? decoder.decode() : decoder.decode(read.value, { stream: true });
      if (text) parser.feed(text);
      // The events of the read that overflowed are lost with it, as the stream parser errors its stream.
      if (tooLarge) throw new UpstreamStreamFormatError("too_large");
      for (const event of events.splice(0)) {
        const name = event.event ?? "message";
        if (name === "error") {
          const parsed = parseJson(event.data);
          const payload = parsed.ok ? parsed.value : event.data;
          throw new UpstreamErrorEvent(isPlainObject(payload) && payload.error !== undefined ? payload.error : payload);
        }
        if (name !== "message" || event.data.trim() === "") continue;
        if (event.data === "[DONE]") return;
        const parsed = parseJson(event.data);
        if (!parsed.ok) throw new UpstreamStreamFormatError("not_json");
        if (isPlainObject(parsed.value) && parsed.value.error) throw new UpstreamErrorEvent(parsed.value.error);
        yield parsed.value;
      }
      if (read.done) return;
    }
  } finally {
    // Stopped before the body's end ([DONE], an error event, the consumer leaving): the rest is not wanted.
    if (!ended) await reader.cancel().catch(() => {});
  }
}
