import { ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./logger.ts";
import { startService } from "./service.ts";

let config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`parley: ${err.message}`);
  process.exit(1);
}

const log = createLogger(config.LOG_LEVEL);
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
