import type { SQL } from "drizzle-orm";
import { PgDialect, type PgPreparedQuery, type PgSession, type PreparedQueryConfig } from "drizzle-orm/pg-core";

/**
 * Statements built once and run with parameters. drizzle builds a query's SQL text from its builder on
 * every call (a walk over the whole tree of columns and conditions: ~15% of the API's and worker's CPU in a
 * profile); a prepared query keeps the text and fills in only its `sql.placeholder(name)` values.
 *
 * A prepared query belongs to the handle it was built on (it runs on that handle's client), so each is
 * built once per handle: once per process for the pool's handle, once per transaction for a transaction
 * (no gain there, only the same code). Whether the server keeps it as a named prepared statement is the
 * pool's business (DATABASE_PREPARED_STATEMENTS, src/db/client.ts), not the name given here.
 *
 * Usage: `const byId = prepared((db: Database) => db.select().from(t).where(eq(t.id, sql.placeholder("id"))).prepare("t_by_id"));`
 * then `await byId(db).execute({ id })`.
 */
export function prepared<H extends object, Q>(build: (db: H) => Q): (db: H) => Q {
  const built = new WeakMap<H, Q>();
  return (db) => {
    let query = built.get(db);
    if (query === undefined) built.set(db, (query = build(db)));
    return query;
  };
}

/**
 * As `prepared`, for a statement whose text depends on a key from a small, bounded set (a number of rows up to
 * a limit, one of a few variants): built once per handle and key. An unbounded key (a value a client chooses)
 * would keep a statement per value: pass such values as placeholders instead.
 */
export function preparedByKey<H extends object, K, Q>(build: (db: H, key: K) => Q): (db: H, key: K) => Q {
  const built = new WeakMap<H, Map<K, Q>>();
  return (db, key) => {
    let forHandle = built.get(db);
    if (forHandle === undefined) built.set(db, (forHandle = new Map()));
    let query = forHandle.get(key);
    if (query === undefined) forHandle.set(key, (query = build(db, key)));
    return query;
  };
}

/**
 * A json(b) placeholder's value: its JSON text, or null for SQL NULL. drizzle's json encoder would turn a
 * null placeholder value into json `null`, so json values are bound as text and cast in the statement.
 */
export const jsonParam = (value: unknown): string | null => (value === null || value === undefined ? null : JSON.stringify(value));

/** Anything that runs statements: the pool's handle or a transaction on it. */
interface Runner {
  readonly _: { readonly session: Pick<PgSession, "prepareQuery"> };
}

// Raw SQL needs no schema or casing: the dialect only renders it to text and parameters.
const dialect = new PgDialect();

/**
 * Raw SQL (what `db.execute` takes) as a prepared query, rows as objects. `db.execute` builds its text on
 * each call and passes no placeholder values, so it cannot run a statement built once; this does what it
 * does (render, then the session's prepareQuery) once, and `execute(values)` fills the placeholders.
 */
export function preparedSql<Row>(db: Runner, name: string, query: SQL): PgPreparedQuery<PreparedQueryConfig & { execute: Row[] }> {
  return db._.session.prepareQuery(dialect.sqlToQuery(query), undefined, name, false);
}
