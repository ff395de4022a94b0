import { pino, type Logger } from "pino";
import { ProviderError } from "./providers/types.ts";

/** JSON logs; credentials and conversation content never reach them. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "parley" },
    serializers: { err: logSafeError },
    redact: { paths: ["req.headers.authorization", "*.api_key", "*.apiKey"], censor: "[redacted]" },
  });
}

interface LoggedError {
  type: string;
  message: string;
  code?: unknown;
  status?: unknown;
  upstreamStatus?: unknown;
  stack?: string;
  cause?: LoggedError;
}

/**
 * An error as it is logged: its kind, code, statuses, message and stack
 * frames, and nothing else. pino's own serializer copies every field, and
 * driver errors carry a query's parameters (content); an upstream's message
 * can quote the prompt, so a provider error logs its code instead.
 */
export function logSafeError(err: unknown, depth = 0): LoggedError {
  if (!(err instanceof Error)) return { type: typeof err, message: "(not an Error)" };
  const fields = err as Error & { code?: unknown; status?: unknown; upstreamStatus?: unknown };
  const fromUpstream = err instanceof ProviderError;
  const logged: LoggedError = {
    type: err.constructor.name,
    message: fromUpstream ? `upstream error ${String(fields.code)} (its text is not logged)` : err.message,
    stack: err.stack?.split("\n").filter((line) => line.startsWith("    at ")).join("\n"),
  };
  for (const key of ["code", "status", "upstreamStatus"] as const) if (fields[key] !== undefined) logged[key] = fields[key];
  if (err.cause !== undefined && depth < 3) logged.cause = logSafeError(err.cause, depth + 1);
  return logged;
}
