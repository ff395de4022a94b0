import type { ReplyEvent } from "./reply-events.ts";

/**
 * The events waiting for one follower's consumer, in order, with no bound
 * (the subscriber cannot wait for a slow client: what it is sent is held here
 * until taken). Read one by one (`for await`), or as the batches that arrived
 * together (`batches()`), so an SSE response can write a stream's pending
 * events with one socket write. Hand-written rather than a Node Readable in
 * object mode: with a thousand streams relaying, the Readable's machinery
 * per event (its buffer list, `readable` ticks, the async iterator's promises)
 * was a tenth of the API's CPU.
 */
export class ReplyEventQueue implements AsyncIterable<ReplyEvent> {
  #items: ReplyEvent[] = [];
  #ended = false;
  #closed = false;
  #wake: (() => void) | null = null;
  readonly #onClose: () => void;

  /** `onClose`: called once, when the consumer stops taking (it has read the end, or left). */
  constructor(onClose: () => void) {
    this.#onClose = onClose;
  }

  push(event: ReplyEvent): void {
    if (this.#ended) return;
    this.#items.push(event);
    this.#wakeUp();
  }

  /** Nothing more will come: the consumer gets what is queued, then the end. */
  end(): void {
    this.#ended = true;
    this.#wakeUp();
  }

  /** Each batch of the events queued when the consumer came for more, never empty; ends after the end. */
  async *batches(): AsyncGenerator<ReplyEvent[]> {
    try {
      for (;;) {
        while (this.#items.length === 0 && !this.#ended) await new Promise<void>((resolve) => (this.#wake = resolve));
        if (this.#items.length === 0) return;
        const batch = this.#items;
        this.#items = [];
        yield batch;
      }
    } finally {
      this.#close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<ReplyEvent> {
    for await (const batch of this.batches()) yield* batch;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ended = true;
    this.#items = [];
    this.#onClose();
  }
}

/** Batches of a follower's events: as they arrived together from a queue, else one event each. */
export function eventBatches(events: AsyncIterable<ReplyEvent>): AsyncIterable<ReplyEvent[]> {
  if (events instanceof ReplyEventQueue) return events.batches();
  return (async function* () {
    for await (const e of events) yield [e];
  })();
}
