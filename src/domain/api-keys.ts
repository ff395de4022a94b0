import { createHash, randomBytes } from "node:crypto";
import { z } from "@hono/zod-openapi";
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { apiKeys, tenants, type ApiKeyRow } from "../db/schema.ts";
import { UnknownApiKeyError } from "./errors.ts";
import { newApiKeyId } from "./ids.ts";

/**
 * Tenants' API keys: made, listed and revoked here (by the CLI and the admin
 * API alike). A key is `prly_<12 hex>_<48 hex>`; the part before the second
 * `_` is its prefix, stored and shown, and the whole key is stored only as its
 * SHA-256. A plain hash is enough (not bcrypt/argon2): the secret is 192
 * random bits, nothing to brute-force, and it is checked on every request.
 */

const KEY_SHAPE = /^prly_([0-9a-f]{12})_[0-9a-f]{48}$/;

export const tenantNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "a tenant name is 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit")
  .openapi({ example: "acme" });

export const apiKeySchema = z
  .object({
    id: z.string().openapi({ example: "key_01jf3t8vvaf8s9k0d7k6x1s2y3" }),
    object: z.literal("api_key"),
    tenant: z.string(),
    name: z.string().nullable(),
    prefix: z.string().openapi({ description: "The start of the key, to tell keys apart.", example: "prly_3f9a1c2e7b40" }),
    created_at: z.int(),
    revoked_at: z.int().nullable(),
  })
  .openapi("ApiKey");
export type ApiKeyResource = z.infer<typeof apiKeySchema>;

/** Who a valid key acts for. */
export interface KeyHolder {
  keyId: string;
  tenantId: string;
  prefix: string;
}

export const hashApiKey = (key: string): string => createHash("sha256").update(key).digest("hex");

/** Whether a string is shaped like one of our keys (so anything else is refused without a lookup). */
export const looksLikeApiKey = (key: string): boolean => KEY_SHAPE.test(key);

export function toApiKeyResource(row: ApiKeyRow): ApiKeyResource {
  const seconds = (d: Date) => Math.floor(d.getTime() / 1000);
  return {
    id: row.id,
    object: "api_key",
    tenant: row.tenantId,
    name: row.name,
    prefix: row.prefix,
    created_at: seconds(row.createdAt),
    revoked_at: row.revokedAt ? seconds(row.revokedAt) : null,
  };
}

/** Makes a key for `tenant` (creating the tenant on its first key); the key itself is returned only here. */
export async function createApiKey(
  db: Database,
  input: { tenant: string; name?: string | null },
): Promise<{ key: string; apiKey: ApiKeyResource }> {
  const tenant = tenantNameSchema.parse(input.tenant);
  await db.insert(tenants).values({ id: tenant }).onConflictDoNothing();
  for (let attempt = 0; ; attempt++) {
    const prefix = `prly_${randomBytes(6).toString("hex")}`;
    const key = `${prefix}_${randomBytes(24).toString("hex")}`;
    try {
      const [row] = await db
        .insert(apiKeys)
        .values({ id: newApiKeyId(), tenantId: tenant, name: input.name ?? null, prefix, hash: hashApiKey(key) })
        .returning();
      if (!row) throw new Error("inserting an API key returned no row");
      return { key, apiKey: toApiKeyResource(row) };
    } catch (err) {
      // Two keys drew the same 48-bit prefix: draw again (a handful of retries is plenty).
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (code !== "23505" || attempt >= 3) throw err;
    }
  }
}

export async function listApiKeys(db: Database, filter: { tenant?: string } = {}): Promise<ApiKeyResource[]> {
  const rows = await db
    .select()
    .from(apiKeys)
    .where(filter.tenant === undefined ? undefined : eq(apiKeys.tenantId, filter.tenant))
    .orderBy(desc(apiKeys.id));
  return rows.map(toApiKeyResource);
}

/** What must hear of a revocation at once, so no API instance keeps accepting the key. */
export interface RevocationListener {
  revoked(keyHash: string): Promise<void>;
}

/**
 * Revokes the key with this prefix (again, harmlessly, if it already is) and
 * tells `listener`, which must not fail silently: if it throws, the call fails
 * and can be repeated.
 */
export async function revokeApiKey(
  deps: { db: Database; revocations: RevocationListener },
  prefix: string,
): Promise<ApiKeyResource> {
  const [row] = await deps.db
    .update(apiKeys)
    .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` })
    .where(eq(apiKeys.prefix, prefix))
    .returning();
  if (!row) throw new UnknownApiKeyError(prefix);
  await deps.revocations.revoked(row.hash);
  return toApiKeyResource(row);
}

export async function findActiveApiKey(db: Database, keyHash: string): Promise<KeyHolder | null> {
  const [row] = await db
    .select({ keyId: apiKeys.id, tenantId: apiKeys.tenantId, prefix: apiKeys.prefix })
    .from(apiKeys)
    .where(and(eq(apiKeys.hash, keyHash), isNull(apiKeys.revokedAt)));
  return row ?? null;
}

export async function countActiveApiKeys(db: Database): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(apiKeys).where(isNull(apiKeys.revokedAt));
  return row?.n ?? 0;
}
