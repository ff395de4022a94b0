import { sql } from "drizzle-orm";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { ConfigError } from "../config.ts";
import * as schema from "./schema.ts";

export type Database = PostgresJsDatabase<typeof schema>;

export interface DatabaseHandle {
  db: Database;
  /** The most connections the pool opens (the option, the URL's `?max=`, or postgres.js's 10). */
  maxConnections: number;
  close(): Promise<void>;
}

/** Told of each statement sent and answered (the metrics' queries in flight: postgres.js shows no pool state). */
export interface StatementCounter {
  started(): void;
  ended(): void;
}

/** How long anything on a connection may take; each bounds one way a connection could be held forever. */
export interface DatabaseTimeouts {
  /** One statement, ended by the server (`statement_timeout`). */
  statementMs: number;
  /** A session idle inside an open transaction, ended by the server with its locks (`idle_in_transaction_session_timeout`). */
  idleInTransactionMs: number;
  /** A new connection, until it is ready for queries. */
  connectMs: number;
}

export const DEFAULT_DATABASE_TIMEOUTS: DatabaseTimeouts = { statementMs: 10_000, idleInTransactionMs: 10_000, connectMs: 5_000 };

/** How the pool is sized and named, and how long its connections live (unset: postgres.js's own defaults). */
export interface DatabasePoolOptions {
  /** Connections at most; unset, the URL's `?max=` or postgres.js's 10. */
  max?: number;
  /** Seconds an unused connection is kept before it is closed; 0 keeps it. */
  idleTimeoutS?: number;
  /** Seconds a connection lives before it is replaced; 0 forever; unset, postgres.js's 30 to 60 minutes. */
  maxLifetimeS?: number;
  /** What the server (and a pooler) shows for these connections (`pg_stat_activity.application_name`). */
  applicationName?: string;
  timeouts?: DatabaseTimeouts;
  preparedStatements?: boolean;
  /**
   * Send the timeouts and `plan_cache_mode` as startup parameters (default). PgBouncer refuses any it does
   * not know (08P01 unsupported startup parameter): `false` there, and set them on the role or database.
   */
  startupParameters?: boolean;
  statements?: StatementCounter;
}

/**
 * A pool of `max` connections. postgres.js has no timeout on waiting for a free
 * connection: a query queues until one is free. The server-side timeouts here
 * bound how long any connection can be held, so the queue always drains, and a
 * request's own wait is bounded by the request deadline (REQUEST_TIMEOUT_MS,
 * src/http/request-deadline.ts) rather than by a hand-written acquire timer
 * around every query drizzle sends.
 */
export function connectDatabase(url: string, opts: DatabasePoolOptions = {}): DatabaseHandle {
  const timeouts = opts.timeouts ?? DEFAULT_DATABASE_TIMEOUTS;
  const pool = postgres(url, {
    // postgres.js reads an option given as undefined as set: only what is set is passed.
    ...(opts.max !== undefined && { max: opts.max }),
    ...(opts.idleTimeoutS !== undefined && { idle_timeout: opts.idleTimeoutS }),
    ...(opts.maxLifetimeS !== undefined && { max_lifetime: opts.maxLifetimeS }),
    // Off, postgres.js sends every statement unnamed, whatever the query asks: drizzle's named `.prepare(name)`
    // (src/db/statements.ts) passes `prepare: true` itself, which a pooler in transaction mode cannot keep.
    prepare: opts.preparedStatements !== false,
    connect_timeout: timeouts.connectMs / 1000,
    // Notices ("relation already exists, skipping") are not errors; keep them out of the logs.
    onnotice: () => {},
    // Startup parameters: the server applies them to every session of the pool from its first statement.
    // PgBouncer passes `application_name` on (it sets it on whichever server connection runs a transaction).
    connection: {
      application_name: opts.applicationName ?? "parley",
      ...(opts.startupParameters !== false && {
        statement_timeout: timeouts.statementMs,
        idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
        // Postgres's default, said here so a server or role setting cannot change it: a prepared statement's
        // plan is reused once its generic plan costs no more than the custom ones. Planning every execution
        // (force_custom_plan) was ~40% of Postgres's time per turn (pg_stat_statements, bench throughput load).
        // A generic plan is made without the values and kept until the table's stats or schema change, so a
        // statement must read an index range with any values and at any table size: in-flight statuses are
        // literals (replies.ts), and the history window's start is one probe of an index in its sort order
        // (schema.ts); test/db/indexes.test.ts checks both under force_generic_plan.
        plan_cache_mode: "auto",
      }),
    },
  });
  const prepare = opts.preparedStatements !== false;
  const sql = prepare || opts.statements ? wrapping(pool, { prepare, statements: opts.statements }) : pool;
  return {
    db: drizzle(sql, { schema }),
    maxConnections: pool.options.max,
    close: () => pool.end({ timeout: 5 }),
  };
}

/**
 * drizzle sends every query unprepared unless it is given a name, and postgres.js then asks the server
 * for a statement's parameter types in a round trip of its own before running it: two round trips per
 * statement. Prepared, postgres.js keeps each statement per connection (by its text) and runs it in one.
 * Transactions get a client of their own (`begin`, `savepoint`), wrapped alike. (Not prepared where a
 * pooler in transaction mode cannot keep a connection's statements: `preparedStatements: false`.)
 * With `statements`, each statement is counted from its sending to its answer: drizzle sends every one
 * through `unsafe`.
 */
function wrapping<T extends postgres.Sql | postgres.TransactionSql>(
  client: T,
  how: { prepare: boolean; statements: StatementCounter | undefined },
): T {
  const { statements } = how;
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop === "unsafe") {
        return (query: string, params?: unknown[], options?: postgres.UnsafeQueryOptions) => {
          const pending = target.unsafe(query, params as never, how.prepare ? { ...options, prepare: true } : options);
          if (statements) {
            statements.started();
            // postgres.js runs a query once it is awaited, a microtask later: drizzle's `.values()` still applies.
            pending.then(statements.ended, statements.ended);
          }
          return pending;
        };
      }
      if (prop === "begin" || prop === "savepoint") {
        const open = Reflect.get(target, prop, receiver) as (...args: unknown[]) => Promise<unknown>;
        return (...args: unknown[]) => {
          const body = args.pop() as (tx: postgres.TransactionSql) => unknown;
          return open.call(target, ...args, (tx: postgres.TransactionSql) => body(wrapping(tx, how)));
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

/**
 * Runs one statement at start so that a pooler refusing the startup parameters (PgBouncer: 08P01
 * "unsupported startup parameter") stops the process with the setting to change, instead of every
 * request failing. Any other failure is left to /readyz and requests' 503s: Postgres may come up later.
 */
export async function refuseUnsupportedStartupParameters(db: Database): Promise<void> {
  try {
    await db.execute(sql`select 1`);
  } catch (err) {
    // drizzle wraps the driver's error (DrizzleQueryError) and keeps it as the cause.
    const { code, message } = ((err as { cause?: unknown }).cause ?? err) as { code?: string; message?: string };
    if (code === "08P01" && /unsupported startup parameter/i.test(message ?? "")) {
      throw new ConfigError(
        `Postgres (through a pooler) refused the connection: "${message}". Set DATABASE_STARTUP_PARAMETERS=false ` +
          `(and DATABASE_PREPARED_STATEMENTS=false in transaction mode), and set the timeouts on the database role instead.`,
      );
    }
  }
}
