import { loadConfig } from "../config.ts";
import { migrateDatabase } from "../db/migrate.ts";

// `npm run db:migrate`: the same migration the service applies at start, on its own.
const config = loadConfig();
await migrateDatabase(config.DATABASE_URL);
console.log(`migrations applied to ${new URL(config.DATABASE_URL).pathname.slice(1)}`);
