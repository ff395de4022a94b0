import type { ReplyEventLog } from "./reply-events.ts";

/**
 * A run's liveness mark lasts this many refresh periods: a renewal or two that
 * come late (a slow Redis, a busy event loop) do not let it lapse.
 */
export const ALIVE_MARK_PERIODS = 3;

/** How long a liveness mark lasts without renewal: the lost-reply sweep waits this long before it believes a mark is gone. */
export const aliveMarkTtlMs = (refreshMs: number): number => refreshMs * ALIVE_MARK_PERIODS;

/**
 * Keeps a reply marked alive (in Redis, in the reply's hash slot) while its
 * run goes on: set now, renewed every `refreshMs`, one command per period.
 * After Redis restarts empty the mark is back within one period, while the
 * run's BullMQ job is gone for good. A renewal that fails is tried at the next
 * period; one still unanswered is not sent again meanwhile. `stop()` ends the
 * renewals; the mark then lapses by itself (it is not deleted: a newer run of
 * the same reply may have set it).
 */
export function keepReplyAlive(events: ReplyEventLog, replyId: string, refreshMs: number): { stop(): void } {
  let renewing = false;
  const renew = () => {
    if (renewing) return;
    renewing = true;
    // Redis away is the event writer's concern; the mark is renewed once Redis answers again.
    events.markAlive(replyId, aliveMarkTtlMs(refreshMs)).then(
      () => (renewing = false),
      () => (renewing = false),
    );
  };
  renew();
  const timer = setInterval(renew, refreshMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
