import { pino, type Logger } from "pino";

/** JSON logs; credentials never reach them. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "parley" },
    redact: { paths: ["req.headers.authorization", "*.api_key", "*.apiKey"], censor: "[redacted]" },
  });
}
