import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A string every chaos scenario puts where a secret or private content goes
 * (the upstream's API key, message content, upstream error text); no process
 * may ever log it.
 */
export const CHAOS_SECRET = "sk-chaos-5ecr3t-7f3a9c1e0b";

/** Where scenarios write each process's output and their notes; the runner sets it per run. */
export const chaosLogDir = () => process.env.CHAOS_LOG_DIR ?? join(tmpdir(), "parley-chaos-logs");
