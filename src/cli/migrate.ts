import { loadConfig } from "../config.ts";
import { migrateDatabase } from "../db/migrate.ts";
import { migrationTarget } from "../db/settings.ts";

// `npm run db:migrate`: the same migration the service applies at start, on its own (over
// DATABASE_MIGRATION_URL when set), for deployments that start with MIGRATE_ON_START=false.
const config = loadConfig();
const { url, opts } = migrationTarget(config);
await migrateDatabase(url, opts);
console.log(`migrations applied to ${new URL(url).pathname.slice(1)}`);
