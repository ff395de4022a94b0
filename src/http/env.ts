import type { Logger } from "pino";

/** What middleware puts on every request's context. */
export interface AppEnv {
  Variables: {
    /** Whose data the request may touch. One tenant until API keys arrive. */
    tenantId: string;
    requestId: string;
    log: Logger;
  };
}
