import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Database } from "../../db/client.ts";
import {
  apiKeySchema,
  createApiKey,
  listApiKeys,
  revokeApiKey,
  tenantNameSchema,
  type RevocationListener,
} from "../../domain/api-keys.ts";
import { storableText } from "../../domain/resources.ts";
import type { AppEnv } from "../env.ts";
import { validationHook } from "../validation.ts";
import { apiKeyListExample, createApiKeyExample, newApiKeyExample, revokedApiKeyExample } from "./examples.ts";
import { errorResponse, jsonBody, jsonResponse } from "./schemas.ts";

const tags = ["Admin"];

/** The admin API (`/admin/keys`): the same key operations as `npm run keys`, behind ADMIN_SECRET. */

export interface AdminKeyDeps {
  db: Database;
  revocations: RevocationListener;
}

const newKeySchema = apiKeySchema
  .extend({ key: z.string().openapi({ description: "The key itself. Shown this once; only its hash is kept." }) })
  .openapi("NewApiKey");

const create = createRoute({
  method: "post",
  path: "/",
  operationId: "createApiKey",
  tags,
  summary: "Create an API key for a tenant (the tenant is created with its first key)",
  request: {
    body: jsonBody(
      z
        .object({ tenant: tenantNameSchema, name: storableText().max(200).nullable().optional() })
        .strict()
        .openapi("CreateApiKey"),
      createApiKeyExample,
    ),
  },
  responses: {
    201: jsonResponse(newKeySchema, "The new key; `key` is never shown again.", newApiKeyExample),
    400: errorResponse("Invalid input."),
    401: errorResponse("No or wrong admin secret."),
  },
});

const list = createRoute({
  method: "get",
  path: "/",
  operationId: "listApiKeys",
  tags,
  summary: "List API keys (never the keys themselves), newest first",
  request: { query: z.object({ tenant: tenantNameSchema.optional() }) },
  responses: {
    200: jsonResponse(z.object({ object: z.literal("list"), data: z.array(apiKeySchema) }).openapi("ApiKeyList"), "The keys.", apiKeyListExample),
    401: errorResponse("No or wrong admin secret."),
  },
});

const revoke = createRoute({
  method: "post",
  path: "/{prefix}/revoke",
  operationId: "revokeApiKey",
  tags,
  summary: "Revoke a key: every API instance refuses it from the next request on",
  request: { params: z.object({ prefix: z.string().openapi({ param: { name: "prefix", in: "path" }, example: "prly_3f9a1c2e7b40" }) }) },
  responses: {
    200: jsonResponse(apiKeySchema, "The revoked key.", revokedApiKeyExample),
    401: errorResponse("No or wrong admin secret."),
    404: errorResponse("No key with this prefix."),
  },
});

export function adminKeyRoutes(deps: AdminKeyDeps) {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(create, async (c) => {
      const { key, apiKey } = await createApiKey(deps.db, c.req.valid("json"));
      c.var.log.info({ keyPrefix: apiKey.prefix, tenantId: apiKey.tenant }, "api key created");
      return c.json({ ...apiKey, key }, 201);
    })
    .openapi(list, async (c) => {
      return c.json({ object: "list" as const, data: await listApiKeys(deps.db, c.req.valid("query")) }, 200);
    })
    .openapi(revoke, async (c) => {
      const apiKey = await revokeApiKey(deps, c.req.valid("param").prefix);
      c.var.log.info({ keyPrefix: apiKey.prefix, tenantId: apiKey.tenant }, "api key revoked");
      return c.json(apiKey, 200);
    });
}
