import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Hono } from "hono";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectDatabase } from "../../src/db/client.ts";
import type { AppEnv } from "../../src/http/env.ts";
import { healthRoutes } from "../../src/http/routes/health.ts";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { apiClient, authedFetch } from "../support/http.ts";
import { TEST_API_KEY, TEST_TENANT } from "../support/keys.ts";
import { freePort } from "../support/processes.ts";
import { startTestService, type TestService } from "../support/service.ts";
import { PARLEY_NODE_FLAGS } from "../../src/runtime-flags.ts";

const ADMIN_SECRET = "an-admin-secret-that-is-long-enough-0123456789";
const root = fileURLToPath(new URL("../..", import.meta.url));

let service: TestService;
let secondApi: RunningService;
let secondUrl: string;

beforeAll(async () => {
  service = await startTestService({ ADMIN_SECRET });
  // Another API instance on the same Postgres and Redis: revocations must reach it too.
  secondApi = await startService({ ...service.config, ROLE: "api", PORT: 0 }, createLogger("silent"));
  secondUrl = secondApi.url!;
});
afterAll(async () => {
  await secondApi?.stop();
  await service?.stop();
});

const admin = (secret = ADMIN_SECRET) => apiClient(`${service.url}/admin`, secret);

async function createKey(tenant: string, name?: string): Promise<{ key: string; prefix: string }> {
  const res = await admin().post("/keys", { tenant, ...(name ? { name } : {}) });
  expect(res.status).toBe(201);
  return { key: res.body.key, prefix: res.body.prefix };
}

function expectAuthError(res: { status: number; headers: Headers; body: any }, code: string) {
  expect(res.status).toBe(401);
  expect(res.body).toEqual({ error: { message: expect.any(String), type: "authentication_error", param: null, code } });
  expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
}

describe("a /v1 request without a valid key", () => {
  const variants: [string, Record<string, string>, string][] = [
    ["no Authorization header", {}, "missing_api_key"],
    ["an empty header", { authorization: "" }, "missing_api_key"],
    ["another scheme", { authorization: `Basic ${Buffer.from("user:pass").toString("base64")}` }, "missing_api_key"],
    ["Bearer with nothing after it", { authorization: "Bearer " }, "missing_api_key"],
    ["a malformed key", { authorization: "Bearer not-a-parley-key" }, "invalid_api_key"],
    ["a key of the right shape that does not exist", { authorization: `Bearer prly_000000000000_${"0".repeat(48)}` }, "invalid_api_key"],
    ["a known prefix with the wrong secret", { authorization: `Bearer ${TEST_API_KEY.slice(0, 18)}${"f".repeat(48)}` }, "invalid_api_key"],
  ];
  it.each(variants)("is a 401 with %s, for every endpoint", async (_, headers, code) => {
    for (const [method, path] of [
      ["GET", "/v1/models"],
      ["GET", "/v1/conversations"],
      ["POST", "/v1/conversations"],
      ["POST", "/v1/chat/completions"],
      ["GET", "/v1/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3/messages"],
    ] as const) {
      const res = await fetch(`${service.url}${path}`, {
        method,
        headers: { ...headers, ...(method === "POST" ? { "content-type": "application/json" } : {}) },
        body: method === "POST" ? JSON.stringify({ model: "parley-sim", messages: [{ role: "user", content: "hi" }] }) : undefined,
      });
      expectAuthError({ status: res.status, headers: res.headers, body: await res.json() }, code);
    }
    // Refused requests wrote nothing.
    const rows = await service.sql`select id from conversations where tenant_id <> ${TEST_TENANT}`;
    expect(rows).toHaveLength(0);
  });

  it("never echoes the key it was given", async () => {
    const key = `prly_abcdefabcdef_${"9".repeat(48)}`;
    const res = await fetch(`${service.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    const text = await res.text();
    expect(res.status).toBe(401);
    expect(text).not.toContain("abcdefabcdef");
  });
});

describe("the admin API", () => {
  it("creates a key that works at once, shows it once, and lists keys without their secret", async () => {
    const { key, prefix } = await createKey("acme", "backend");
    expect(key).toMatch(/^prly_[0-9a-f]{12}_[0-9a-f]{48}$/);
    expect(key.startsWith(`${prefix}_`)).toBe(true);

    const acme = apiClient(`${service.url}/v1`, key);
    const created = await acme.post("/conversations", { title: "acme's" });
    expect(created.status).toBe(201);
    const [row] = await service.sql`select tenant_id from conversations where id = ${created.body.id}`;
    expect(row?.tenant_id).toBe("acme");

    const listed = await admin().get("/keys?tenant=acme");
    expect(listed.status).toBe(200);
    expect(listed.body.data).toEqual([
      { id: expect.stringMatching(/^key_/), object: "api_key", tenant: "acme", name: "backend", prefix, created_at: expect.any(Number), revoked_at: null },
    ]);
    expect(JSON.stringify(listed.body)).not.toContain(key.slice(18));

    // Only the hash is stored.
    const stored = await service.sql`select * from api_keys where prefix = ${prefix}`;
    expect(JSON.stringify(stored)).not.toContain(key.slice(18));
  });

  it("revokes a key: refused at once on this instance and on another, while other keys keep working", async () => {
    const { key, prefix } = await createKey("revokers");
    const other = await createKey("revokers");
    const here = apiClient(`${service.url}/v1`, key);
    const there = apiClient(`${secondUrl}/v1`, key);
    // Both instances have seen (and cached) the key before it is revoked.
    expect((await here.get("/models")).status).toBe(200);
    expect((await there.get("/models")).status).toBe(200);

    const revoked = await admin().post(`/keys/${prefix}/revoke`);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ prefix, tenant: "revokers", revoked_at: expect.any(Number) });

    expectAuthError(await here.get("/models"), "invalid_api_key");
    expectAuthError(await there.get("/models"), "invalid_api_key");
    expect((await apiClient(`${secondUrl}/v1`, other.key).get("/models")).status).toBe(200);

    // Revoking again changes nothing (the first revocation time stays).
    const again = await admin().post(`/keys/${prefix}/revoke`);
    expect(again.status).toBe(200);
    expect(again.body.revoked_at).toBe(revoked.body.revoked_at);
  });

  it("answers 404 for a prefix it does not know and 400 for a bad tenant name", async () => {
    const missing = await admin().post("/keys/prly_000000000000/revoke");
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ type: "invalid_request_error", message: expect.stringContaining("prly_000000000000") });

    for (const tenant of ["", "Has Capitals", "x".repeat(64), "../etc", "naïve"]) {
      const res = await admin().post("/keys", { tenant });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: "invalid_request_error", param: "tenant" });
    }
    const extra = await admin().post("/keys", { tenant: "fine", admin: true });
    expect(extra.status).toBe(400);
    expect((await service.sql`select 1 from tenants where id = 'fine'`).length).toBe(0);
  });

  it("refuses a missing or wrong admin secret, and an API key in its place", async () => {
    for (const secret of ["", "wrong", `${ADMIN_SECRET}x`, TEST_API_KEY]) {
      const res = await admin(secret).get("/keys");
      expectAuthError(res, "invalid_admin_secret");
    }
    // And the admin secret is no API key.
    expectAuthError(await apiClient(`${service.url}/v1`, ADMIN_SECRET).get("/models"), "invalid_api_key");
  });

  it("is off when the server has no ADMIN_SECRET", async () => {
    const open = await startService({ ...service.config, ROLE: "api", PORT: 0, ADMIN_SECRET: undefined }, createLogger("silent"));
    try {
      const res = await apiClient(`${open.url}/admin`, ADMIN_SECRET).get("/keys");
      expectAuthError(res, "admin_api_disabled");
      expect(res.body.error.message).toContain("ADMIN_SECRET");
    } finally {
      await open.stop();
    }
  });
});

describe("npm run keys", () => {
  // Four or five processes started one after another: seconds each on a loaded machine.
  const run = (args: string[]) =>
    promisify(execFile)(process.execPath, [...PARLEY_NODE_FLAGS, "dist/cli/keys.js", ...args], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? "",
        DATABASE_URL: service.config.DATABASE_URL,
        REDIS_URL: service.config.REDIS_URL,
        REDIS_PREFIX: service.config.REDIS_PREFIX,
      },
    });

  it("creates a key (printed on the last line), lists it, and revokes it for every running instance", async () => {
    const created = await run(["create", "--tenant", "cli-tenant", "--name", "from the cli"]);
    const key = created.stdout.trim().split("\n").at(-1)!;
    expect(key).toMatch(/^prly_[0-9a-f]{12}_[0-9a-f]{48}$/);
    const prefix = key.slice(0, 17);

    const api = apiClient(`${secondUrl}/v1`, key);
    expect((await api.get("/models")).status).toBe(200);

    const listed = await run(["list", "--tenant", "cli-tenant"]);
    expect(listed.stdout).toContain(prefix);
    expect(listed.stdout).toContain("active");
    expect(listed.stdout).not.toContain(key.slice(18));

    const revoked = await run(["revoke", prefix]);
    expect(revoked.stdout).toContain(`revoked ${prefix}`);
    expectAuthError(await api.get("/models"), "invalid_api_key");
    expectAuthError(await apiClient(`${service.url}/v1`, key).get("/models"), "invalid_api_key");
    expect((await run(["list", "--tenant", "cli-tenant"])).stdout).toMatch(/revoked \d{4}-/);
  }, 90_000);

  it("exits 2 with the usage for a bad command, and 1 naming the problem for a bad tenant or prefix", async () => {
    await expect(run(["create"])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("usage:") });
    await expect(run(["frobnicate"])).rejects.toMatchObject({ code: 2 });
    await expect(run(["create", "--tenant", "Not Valid"])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("tenant name"),
    });
    await expect(run(["revoke", "prly_000000000000"])).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("prly_000000000000") });
  }, 90_000);
});

describe("health endpoints", () => {
  it("answer without a key and say nothing but the verdict", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      const res = await fetch(`${service.url}${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: path === "/healthz" ? "ok" : "ready" });
    }
  });

  it("/readyz is a 503 while Redis does not answer", async () => {
    const database = connectDatabase(service.config.DATABASE_URL, { max: 1 });
    const deadRedis = new Redis(`redis://127.0.0.1:${await freePort()}`, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    deadRedis.on("error", () => {});
    try {
      const app = new Hono<AppEnv>()
        .use((c, next) => {
          c.set("log", createLogger("silent"));
          return next();
        })
        .route("/", healthRoutes({ db: database.db, redis: deadRedis, readyKey: `${service.config.REDIS_PREFIX}:readyz`, timeoutMs: 500 }));
      const res = await app.request("/readyz");
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ status: "unavailable" });
    } finally {
      deadRedis.disconnect();
      await database.close();
    }
  });
});

it("keeps a caller's plain request id and replaces anything else", async () => {
  const kept = await authedFetch(`${service.url}/v1/models`, { headers: { "x-request-id": "req-123.abc:9" } });
  expect(kept.headers.get("x-request-id")).toBe("req-123.abc:9");
  for (const bad of ["has space", "x".repeat(129), "<script>", "a\tb"]) {
    const res = await authedFetch(`${service.url}/v1/models`, { headers: { "x-request-id": bad } });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  }
});
