import type { Logger } from "pino";
import { ConfigError, loadConfig } from "./config.ts";
import { createLogger, logSafeError } from "./logger.ts";
import { startService } from "./service.ts";

/**
 * Node's own crash output prints the whole error, and a driver's or an
 * upstream's message quotes query parameters, content and keys. A crash is
 * logged as every error is (logSafeError: type, code, frames), and the
 * process still dies as Node's default would: after an uncaught exception
 * its state is unknown, and a rejection nobody handled is a bug as loud.
 * Replies in flight are recovered as after any crash (stalled jobs).
 */
let crashLog: Logger = createLogger("info");
function dieLogged(origin: "uncaughtException" | "unhandledRejection") {
  return (err: unknown) => {
    try {
      crashLog.fatal({ err: logSafeError(err), origin }, "crashed");
    } catch {
      process.stderr.write(`parley: crashed (${origin}); the error could not be logged\n`);
    }
    process.exit(1);
  };
}
process.on("uncaughtException", dieLogged("uncaughtException"));
process.on("unhandledRejection", dieLogged("unhandledRejection"));

let config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`parley: ${err.message}`);
  process.exit(1);
}

const log = createLogger(config.LOG_LEVEL);
crashLog = log;
const service = await startService(config, log).catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(`parley: ${err.message}`);
  else log.fatal({ err }, "could not start");
  process.exit(1);
});

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, "shutting down");
    service.stop().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  });
}
