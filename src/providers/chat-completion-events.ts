import { EventSourceParserStream, ParseError } from "eventsource-parser/stream";

/**
 * Reading an upstream's chat-completions stream (server-sent events) into the
 * JSON payloads it carries.
 *
 * Not the SDK's own reader: it hands every event to JSON.parse, so a data-less
 * or empty event (`event: ping`, as some servers send) failed the reply, and it
 * keeps neither a leading BOM nor an unknown event out. eventsource-parser
 * implements the WHATWG event-stream interpretation (CR, LF and CRLF line ends,
 * comments, `retry:`/`id:` fields, multi-line `data:` joined with \n, events
 * split anywhere across reads); TextDecoderStream joins UTF-8 characters split
 * across reads and drops a leading BOM.
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
  const events = body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream({ maxBufferSize: MAX_UPSTREAM_EVENT_CHARS }));
  try {
    for await (const event of events) {
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
  } catch (err) {
    // The only ParseError eventsource-parser raises to the stream is the buffer limit.
    if (err instanceof ParseError) throw new UpstreamStreamFormatError("too_large");
    throw err;
  }
}
