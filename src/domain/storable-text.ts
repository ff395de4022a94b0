/**
 * Text a model streams, made storable as it comes: Postgres `text` holds
 * neither NUL nor lone UTF-16 surrogates (22021), so both become U+FFFD before
 * a delta is streamed or kept, and the events and the stored reply agree. A
 * high surrogate that ends a delta is held for the next one, which may start
 * with its pair.
 */

const REPLACEMENT = "\uFFFD";

/** `text` with NUL and lone surrogates replaced by U+FFFD. */
export const storableText = (text: string): string => text.toWellFormed().replaceAll("\u0000", REPLACEMENT);

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

export class StorableTextStream {
  #held = "";

  /** The storable part of `delta` (with what was held before it); may be "" while a surrogate is held. */
  push(delta: string): string {
    let text = this.#held + delta;
    this.#held = "";
    if (text && isHighSurrogate(text.charCodeAt(text.length - 1))) {
      this.#held = text.slice(-1);
      text = text.slice(0, -1);
    }
    return storableText(text);
  }

  /** What is still held at the end of the stream (a lone high surrogate, as U+FFFD), or "". */
  end(): string {
    const rest = storableText(this.#held);
    this.#held = "";
    return rest;
  }
}
