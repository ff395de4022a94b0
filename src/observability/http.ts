import type { Context } from "hono";
import { matchedRoutes } from "hono/route";
import { streamIdMs } from "../streams/reply-events.ts";

/** The route label of a request that matched no endpoint (404s, preflights): one value whatever the path. */
export const UNMATCHED_ROUTE = "unmatched";

/**
 * The route PATTERN a request matched (`/v1/conversations/:id/messages`), never its path: a label per id
 * would grow without end. The last matched endpoint counts; middleware (Hono's method `ALL`) does not.
 */
export function routeLabel(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i];
    if (route && route.method !== "ALL") return route.path;
  }
  return UNMATCHED_ROUTE;
}

/**
 * Relay lag of one event written on an SSE response opened at `openedAt` (ms): from its write to Redis to now.
 * Events written before the response opened (a backlog, a replay after a reconnect) were not relayed live:
 * they are left out (null), as are events whose ids carry no time (an inline completion's `0-n`).
 */
export function relayLagSeconds(id: string, openedAt: number, now: number): number | null {
  const written = streamIdMs(id);
  if (!(written >= openedAt)) return null;
  return Math.max(0, now - written) / 1000;
}

/** Observes the relay lag of events as an SSE response opened now writes them; a no-op without an observer. */
export function relayLagMeter(observe: ((seconds: number) => void) | undefined): (ids: readonly { id: string }[]) => void {
  if (!observe) return () => {};
  const openedAt = Date.now();
  return (events) => {
    const now = Date.now();
    for (const e of events) {
      const lag = relayLagSeconds(e.id, openedAt, now);
      if (lag !== null) observe(lag);
    }
  };
}
