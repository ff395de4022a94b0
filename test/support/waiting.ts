import { setTimeout as delay } from "node:timers/promises";

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => delay(ms);

export interface EventuallyOptions {
  /** What is waited for, named in the error when it does not come. */
  what: string;
  /** The bound: be generous, the machine running the tests is shared and loaded. */
  timeoutMs: number;
  /** How often to ask; 100 ms unless told. */
  everyMs?: number;
}

/**
 * Asks `probe` every `everyMs` until it returns something other than null,
 * undefined or false, and resolves with that. A probe that throws counts as
 * "not yet" (what it asks may be down on purpose); the last error is named if
 * the bound passes.
 */
export async function eventually<T>(
  probe: () => Promise<T | null | undefined | false>,
  { what, timeoutMs, everyMs = 100 }: EventuallyOptions,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const value = await probe().catch((err: unknown) => {
      lastError = err;
      return null;
    });
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? "" : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`${what}: not within ${timeoutMs} ms${cause}`, { cause: lastError });
    }
    await sleep(everyMs);
  }
}
