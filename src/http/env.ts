import type { Logger } from "pino";
import type { InputLimits } from "./input-limits.ts";

/** What middleware puts on every request's context. */
export interface AppEnv {
  Variables: {
    /** Whose data the request may touch: the tenant of its API key. */
    tenantId: string;
    /** The API key's id (what the request rate is counted against). */
    keyId: string;
    requestId: string;
    log: Logger;
    /** The configured input limits, checked after each route's schema. */
    limits: InputLimits;
    /** Ends the request deadline: the request has stored its work and now waits for a model only. */
    liftDeadline: () => void;
    /** Aborted when the request deadline passes (the request has been answered 503). */
    deadline: AbortSignal;
    /** Where SSE responses report each event's relay lag (the metrics; unset: not measured). */
    relayLag: ((seconds: number) => void) | undefined;
  };
}
