import { randomBytes } from "node:crypto";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { apiClient } from "../../support/http.ts";
import { startTestService, type TestService } from "../../support/service.ts";

/** Debian's Chromium (`apt-get install chromium`), or the one CHROMIUM_PATH names. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Headless, without the sandbox (these tests run as root in a container, where Chromium's sandbox cannot start). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ["--no-sandbox"] });
}

export type ApiClient = ReturnType<typeof apiClient>;

/** An API key of a tenant, and a client of the public API that uses it. */
export interface TenantKey {
  tenant: string;
  key: string;
  /** The key's prefix, which names it to the admin API (revocation). */
  prefix: string;
  /** `/v1` as the holder of this key. */
  api: ApiClient;
}

export interface Harness {
  service: TestService;
  /** The console's address: the API's base URL; the console is served at `/`. */
  baseUrl: string;
  browser: Browser;
  /** Two tenants, each with a key made through the admin API as an operator would. */
  alpha: TenantKey;
  beta: TenantKey;
  /** A new key for `tenant` (POST /admin/keys). */
  newKey(tenant: string): Promise<TenantKey>;
  /** Revokes a key (POST /admin/keys/{prefix}/revoke): refused from the next request on. */
  revoke(key: TenantKey): Promise<void>;
}

/**
 * For one test file: a Parley of its own (API and worker in this process, the simulator as its only model,
 * its own database and Redis prefix, an ADMIN_SECRET so keys are made and revoked over /admin/keys) and a
 * Chromium; both stopped after the file. The returned object is filled in once `beforeAll` has run.
 */
export function useConsoleHarness(overrides: Parameters<typeof startTestService>[0] = {}): Harness {
  const h = {} as Harness;
  const adminSecret = randomBytes(24).toString("hex");
  beforeAll(async () => {
    const [service, browser] = await Promise.all([
      startTestService({
        ADMIN_SECRET: adminSecret,
        // A tab following a reply polls its conversation every ~1.5 s, and a test may keep two tabs and its own
        // checks going for a minute: the default 600 requests a minute per key is not what these tests are about.
        RATE_LIMIT_REQUESTS: 100_000,
        // Replies paced in real time (`params.simulate`) should start at once, as the tests' own pacing says.
        SIMULATOR_TTFT_MS: 0,
        ...overrides,
      }),
      launchChromium(),
    ]);
    h.service = service;
    h.browser = browser;
    h.baseUrl = service.url;
    const admin = apiClient(`${service.url}/admin`, adminSecret);
    h.newKey = async (tenant) => {
      const res = await admin.post<{ key: string; prefix: string }>("/keys", { tenant, name: "browser tests" });
      if (res.status !== 201) throw new Error(`POST /admin/keys answered ${res.status}: ${JSON.stringify(res.body)}`);
      return { tenant, key: res.body.key, prefix: res.body.prefix, api: apiClient(`${service.url}/v1`, res.body.key) };
    };
    h.revoke = async (key) => {
      const res = await admin.post(`/keys/${key.prefix}/revoke`);
      if (res.status !== 200) throw new Error(`revoking ${key.prefix} answered ${res.status}: ${JSON.stringify(res.body)}`);
    };
    h.alpha = await h.newKey("alpha");
    h.beta = await h.newKey("beta");
  });
  afterAll(async () => {
    await h.browser?.close();
    await h.service?.stop();
  });
  return h;
}
