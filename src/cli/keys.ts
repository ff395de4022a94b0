import { parseArgs } from "node:util";
import { pino } from "pino";
import { ZodError } from "zod";
import { connectRedisClient } from "../redis/client.ts";
import { ApiKeyAuthenticator } from "../access/api-key-cache.ts";
import { ConfigError, loadConfig } from "../config.ts";
import { connectDatabase } from "../db/client.ts";
import { migrateDatabase } from "../db/migrate.ts";
import { databaseApplicationName, databasePoolOptions, migrationTarget } from "../db/settings.ts";
import { createApiKey, listApiKeys, revokeApiKey, type ApiKeyResource } from "../domain/api-keys.ts";
import { UnknownApiKeyError } from "../domain/errors.ts";

/**
 * `npm run keys -- create --tenant <name> [--name <label>]` prints the new key
 * on its last line; `list [--tenant <name>]`; `revoke <prefix>`. Works on the
 * database and Redis the service is configured with (DATABASE_URL, REDIS_URL,
 * REDIS_PREFIX), with or without the service running.
 */

const USAGE = "usage: npm run keys -- create --tenant <name> [--name <label>] | list [--tenant <name>] | revoke <prefix>";

function describe(k: ApiKeyResource): string {
  const when = (s: number) => new Date(s * 1000).toISOString();
  const state = k.revoked_at === null ? "active" : `revoked ${when(k.revoked_at)}`;
  return `${k.prefix}  tenant=${k.tenant}  name=${k.name ?? "-"}  created ${when(k.created_at)}  ${state}`;
}

async function run(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { tenant: { type: "string" }, name: { type: "string" } },
  });
  const [command, ...rest] = positionals;
  const config = loadConfig();
  // The service's own database settings (a pooler's included), on one connection.
  const migration = migrationTarget(config);
  if (config.MIGRATE_ON_START) await migrateDatabase(migration.url, migration.opts);
  const database = connectDatabase(config.DATABASE_URL, { ...databasePoolOptions(config), max: 1, applicationName: databaseApplicationName(config, "keys") });
  const redis = connectRedisClient({ url: config.REDIS_URL, clusterNodes: config.REDIS_CLUSTER_NODES }, { maxRetriesPerRequest: 2, lazyConnect: true });
  try {
    if (command === "create" && values.tenant && rest.length === 0) {
      const { key, apiKey } = await createApiKey(database.db, { tenant: values.tenant, name: values.name ?? null });
      console.log(`created ${describe(apiKey)}`);
      console.log("the key is shown this once; keep it secret:");
      console.log(key);
      return 0;
    }
    if (command === "list" && rest.length === 0) {
      const keys = await listApiKeys(database.db, values.tenant ? { tenant: values.tenant } : {});
      for (const k of keys) console.log(describe(k));
      if (keys.length === 0) console.log("no keys");
      return 0;
    }
    if (command === "revoke" && rest.length === 1 && rest[0]) {
      const authenticator = new ApiKeyAuthenticator({
        db: database.db,
        redis,
        prefix: config.REDIS_PREFIX,
        ttlSeconds: config.API_KEY_CACHE_SECONDS,
        log: pino({ level: "silent" }),
      });
      console.log(`revoked ${describe(await revokeApiKey({ db: database.db, revocations: authenticator }, rest[0]))}`);
      return 0;
    }
    console.error(USAGE);
    return 2;
  } finally {
    redis.disconnect();
    await database.close();
  }
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  const message =
    err instanceof ZodError
      ? err.issues.map((i) => i.message).join("; ")
      : err instanceof ConfigError || err instanceof UnknownApiKeyError
        ? err.message
        : String((err as Error)?.stack ?? err);
  console.error(`keys: ${message}`);
  process.exitCode = 1;
}
