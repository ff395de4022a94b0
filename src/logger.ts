import { pino, type DestinationStream, type Logger } from "pino";
import postgres from "postgres";
import { ConfigError } from "./config.ts";
import {
  AuthenticationError,
  ConversationBusyError,
  DependencyUnavailableError,
  IdempotencyConflictError,
  NotFoundError,
  ParleyError,
  RateLimitedError,
  UnknownApiKeyError,
} from "./domain/errors.ts";
import { ProviderError } from "./providers/types.ts";

/** pino's number for `error`: lines at this level and above are written out at once. */
const ERROR_LEVEL = 50;

/**
 * JSON logs; credentials and conversation content never reach them. Every
 * error, under `err` or any other top-level field, is logged by logSafeError.
 * `destination` is for tests that read the log.
 *
 * Lines go to stdout asynchronously: a request's line is queued and written
 * with whatever else is pending, rather than a blocking write per line on the
 * request's path. What is queued is written before the process exits (pino
 * flushes on `exit`, which a crash logged by main.ts reaches through
 * process.exit), and every `error` or `fatal` line is flushed at once, with
 * the lines before it, so none is lost to a kill that no handler sees.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const stdout = destination ? null : pino.destination({ dest: 1, sync: false });
  const options = {
    level,
    base: { service: "parley" },
    redact: { paths: ["req.headers.authorization", "*.api_key", "*.apiKey"], censor: "[redacted]" },
    formatters: {
      log: (fields: Record<string, unknown>) => {
        const safe: Record<string, unknown> = {};
        for (const [key, value] of Object.entries(fields)) safe[key] = value instanceof Error ? logSafeError(value) : value;
        return safe;
      },
    },
    hooks: {
      // Given an error and no message, pino would make the error's message the line's.
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void, level: number) {
        const [first] = args;
        const carriesError = first instanceof Error || (isRecord(first) && first.err !== undefined);
        method.apply(this, carriesError && args.length === 1 ? [first, "error"] : args);
        if (level >= ERROR_LEVEL && stdout) flushQuietly(stdout);
      },
    },
  };
  return pino(options, destination ?? stdout ?? undefined);
}

/** A flush that fails (stdout closed, not yet open) must not turn a logged error into a thrown one. */
function flushQuietly(stream: { flushSync(): void }): void {
  try {
    stream.flushSync();
  } catch {
    // The line stays queued; pino writes it with the next ones, or on exit.
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

/**
 * Parley's own errors whose messages are built from ids, codes and settings,
 * never from content or what an upstream said. Every other message is left
 * out: drivers quote query parameters (drizzle's "Failed query: … params: …")
 * and values (Postgres' `invalid input syntax for type integer: "…"`), an
 * upstream quotes keys and prompts, and fetch names internal addresses.
 */
const MESSAGE_IS_SAFE = [
  ConversationBusyError,
  DependencyUnavailableError,
  IdempotencyConflictError,
  RateLimitedError,
  AuthenticationError,
  NotFoundError,
  UnknownApiKeyError,
  ConfigError,
];

/** Codes drivers and Node use are constants (ECONNREFUSED, UND_ERR_SOCKET, CONNECTION_CLOSED) or SQLSTATEs (22021). */
const DRIVER_CODE = /^[A-Z0-9_]{2,64}$/;
/** Postgres names (a constraint, a table, a C routine): our schema's or the server's, never a value. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$.]{0,127}$/;

interface LoggedError {
  type: string;
  name?: string;
  message?: string;
  code?: string | number;
  errno?: number;
  syscall?: string;
  status?: number;
  upstreamStatus?: number;
  severity?: string;
  routine?: string;
  constraint?: string;
  table?: string;
  column?: string;
  stack?: string;
  cause?: LoggedError;
  errors?: LoggedError[];
}

/**
 * An error as it is logged: its kind, code, statuses and stack frames; its
 * message only for the classes in MESSAGE_IS_SAFE. Causes are followed (a
 * few levels), each the same way.
 */
export function logSafeError(err: unknown, depth = 0): LoggedError {
  if (!(err instanceof Error)) return { type: err === null ? "null" : typeof err };
  const fields = err as Error & Record<string, unknown>;
  const ours = err instanceof ProviderError || err instanceof ParleyError;
  const logged: LoggedError = { type: err.constructor.name };
  if (err.name !== logged.type && IDENTIFIER.test(err.name)) logged.name = err.name;
  if (MESSAGE_IS_SAFE.some((safe) => err instanceof safe)) logged.message = err.message;

  const code = fields.code;
  if (typeof code === "number" || (typeof code === "string" && (ours || DRIVER_CODE.test(code)))) logged.code = code;
  // Redis answers with an error word first ("WRONGTYPE …", "NOSCRIPT …"); the rest may name keys.
  if (logged.code === undefined && err.name === "ReplyError") {
    const word = /^[A-Z]{2,32}(?= )/.exec(err.message)?.[0];
    if (word) logged.code = word;
  }
  if (typeof fields.errno === "number") logged.errno = fields.errno;
  if (typeof fields.syscall === "string" && IDENTIFIER.test(fields.syscall)) logged.syscall = fields.syscall;
  if (typeof fields.status === "number") logged.status = fields.status;
  if (typeof fields.upstreamStatus === "number") logged.upstreamStatus = fields.upstreamStatus;
  if (err instanceof postgres.PostgresError) {
    const named = { severity: err.severity, routine: err.routine, constraint: err.constraint_name, table: err.table_name, column: err.column_name };
    for (const [key, value] of Object.entries(named)) {
      if (typeof value === "string" && IDENTIFIER.test(value)) logged[key as "severity"] = value;
    }
  }

  // The stack starts with the message, which may itself hold lines that look like frames.
  const frames = err.stack
    ?.replace(err.message, "")
    .split("\n")
    .filter((line) => line.startsWith("    at "))
    .slice(0, 12)
    .join("\n");
  if (frames) logged.stack = frames;
  if (depth < 4) {
    if (err.cause !== undefined) logged.cause = logSafeError(err.cause, depth + 1);
    if (err instanceof AggregateError) logged.errors = err.errors.slice(0, 3).map((e) => logSafeError(e, depth + 1));
  }
  return logged;
}
