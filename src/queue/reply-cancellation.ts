import type { RedisClient } from "../redis/client.ts";
import type { Logger } from "pino";

/**
 * Cancelling a reply (or stopping a stateless completion whose client left)
 * reaches whichever worker process is generating it: the API publishes the
 * reply's or completion's id, and every worker process listens on one
 * channel and aborts its own generation of it, if it has one.
 */

export const cancelChannel = (prefix: string) => `${prefix}:cancel-replies`;

export async function publishCancel(redis: RedisClient, prefix: string, replyId: string): Promise<void> {
  await redis.publish(cancelChannel(prefix), replyId);
}

export class CancellationListener {
  readonly #running = new Map<string, AbortController>();
  readonly #subscriber: RedisClient;
  readonly #ready: Promise<unknown>;

  constructor(opts: { subscriber: RedisClient; prefix: string; log: Logger }) {
    this.#subscriber = opts.subscriber;
    this.#subscriber.on("message", (_channel: string, replyId: string) => {
      this.#running.get(replyId)?.abort(new Error("the reply was cancelled"));
    });
    this.#ready = this.#subscriber.subscribe(cancelChannel(opts.prefix)).catch((err: unknown) => {
      opts.log.error({ err }, "could not listen for cancellations");
    });
  }

  /** Resolves once cancellations are being received. */
  ready(): Promise<unknown> {
    return this.#ready;
  }

  /** A signal that aborts when `replyId` is cancelled, until `done()` is called. */
  watch(replyId: string): { signal: AbortSignal; done(): void } {
    const controller = new AbortController();
    this.#running.set(replyId, controller);
    return { signal: controller.signal, done: () => this.#running.delete(replyId) };
  }
}
