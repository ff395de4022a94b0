import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as schema from "./schema.ts";

export type Database = PostgresJsDatabase<typeof schema>;

export interface DatabaseHandle {
  db: Database;
  close(): Promise<void>;
}

export function connectDatabase(url: string, opts: { max?: number } = {}): DatabaseHandle {
  const sql = postgres(url, {
    max: opts.max ?? 10,
    // Notices ("relation already exists, skipping") are not errors; keep them out of the logs.
    onnotice: () => {},
    connection: { application_name: "parley" },
  });
  return {
    db: drizzle(sql, { schema }),
    close: () => sql.end({ timeout: 5 }),
  };
}
