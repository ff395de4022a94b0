import { hostname } from "node:os";
import type { Config } from "../config.ts";
import type { DatabasePoolOptions } from "./client.ts";
import type { MigrationOptions } from "./migrate.ts";

/** Postgres keeps the first 63 bytes of `application_name`. */
const APPLICATION_NAME_BYTES = 63;

/**
 * `parley-<role>-<hostname>-<pid>` unless DATABASE_APPLICATION_NAME is set: each process's connections
 * told apart in pg_stat_activity (and PgBouncer's SHOW CLIENTS). A long hostname is cut, not the pid.
 */
export function databaseApplicationName(
  config: Pick<Config, "DATABASE_APPLICATION_NAME">,
  role: string,
  host = hostname(),
  pid = process.pid,
): string {
  if (config.DATABASE_APPLICATION_NAME) return config.DATABASE_APPLICATION_NAME;
  const head = `parley-${role}-`;
  const tail = `-${pid}`;
  // Printable ASCII only, so the cut cannot split a character.
  const printable = host.replace(/[^\x20-\x7e]/g, "?");
  return head + printable.slice(0, Math.max(0, APPLICATION_NAME_BYTES - head.length - tail.length)) + tail;
}

/** The service's pool, as the DATABASE_* settings ask. */
export function databasePoolOptions(config: Config): DatabasePoolOptions {
  return {
    max: config.DATABASE_POOL_MAX,
    idleTimeoutS: config.DATABASE_IDLE_TIMEOUT_S,
    maxLifetimeS: config.DATABASE_MAX_LIFETIME_S,
    applicationName: databaseApplicationName(config, config.ROLE),
    timeouts: {
      statementMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
      idleInTransactionMs: config.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      connectMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    },
    preparedStatements: config.DATABASE_PREPARED_STATEMENTS,
    startupParameters: config.DATABASE_STARTUP_PARAMETERS,
  };
}

/** Where migrations run (a direct URL when one is given) and how their connection is named. */
export function migrationTarget(config: Config): { url: string; opts: MigrationOptions } {
  return {
    url: config.DATABASE_MIGRATION_URL ?? config.DATABASE_URL,
    opts: { applicationName: databaseApplicationName(config, "migrate") },
  };
}
