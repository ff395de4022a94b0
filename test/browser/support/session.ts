import { mkdirSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BrowserContext, Page } from "playwright-core";
import { expect, onTestFailed, onTestFinished } from "vitest";
import { ConsolePage } from "./console-page.ts";
import type { Harness } from "./harness.ts";

/** Screenshots go under `test-results/` at the repository's root (ignored by git). */
const RESULTS_DIR = fileURLToPath(new URL("../../../test-results/", import.meta.url));

/** What a Playwright action waits for before failing: generous, the machine is shared and slow. */
const ACTION_TIMEOUT_MS = 20_000;
const NAVIGATION_TIMEOUT_MS = 45_000;

const slug = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 80)
    .replace(/-+$/, "");

export interface BrowserSession {
  context: BrowserContext;
  /** The first tab. */
  console: ConsolePage;
  /** Another tab in the same browser context (its own sessionStorage, so it signs in itself). */
  newTab(): Promise<ConsolePage>;
  /** Writes `test-results/<test>/<nn>-<step>.png` of `tab` (the first tab unless told). */
  shot(step: string, tab?: ConsolePage): Promise<void>;
  /** Fails unless every request of every tab went to Parley's origin, and only to `/`, `/console/…` or `/v1/…`. */
  expectOnlyPublicApi(): void;
}

/**
 * A fresh browser context for the current test (nothing shared with other tests: no sessionStorage, no
 * cookies), closed when the test ends. Every dialog is accepted (a confirm() before a fork would otherwise be
 * dismissed). When the test fails, each tab's last state is screenshotted and the page errors it logged are
 * printed.
 */
export async function openSession(h: Harness): Promise<BrowserSession> {
  const state = expect.getState();
  const file = basename(state.testPath ?? "test").replace(/\.browser\.ts$/, "");
  // The test's own name, without its describe block's: `<file>-<test>`.
  const test = (state.currentTestName ?? "test").split(" > ").at(-1);
  const dir = join(RESULTS_DIR, slug(`${file} ${test}`));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });

  const context = await h.browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(ACTION_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  const origin = new URL(h.baseUrl).origin;
  const requests: URL[] = [];
  const pageErrors: string[] = [];
  const tabs: ConsolePage[] = [];
  let shots = 0;

  const watch = (page: Page, name: string) => {
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.protocol === "http:" || url.protocol === "https:") requests.push(url);
    });
    page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(`${name} console: ${m.text()}`);
    });
    page.on("dialog", (d) => void d.accept().catch(() => {}));
  };
  const newTab = async () => {
    const page = await context.newPage();
    watch(page, `tab ${tabs.length + 1}`);
    const tab = new ConsolePage(page, h.baseUrl);
    tabs.push(tab);
    return tab;
  };
  const first = await newTab();

  const shot = async (step: string, tab: ConsolePage = first) => {
    shots += 1;
    await tab.page.screenshot({ path: join(dir, `${String(shots).padStart(2, "0")}-${slug(step)}.png`), timeout: ACTION_TIMEOUT_MS });
  };

  onTestFailed(async () => {
    for (const [i, tab] of tabs.entries()) {
      if (tab.page.isClosed()) continue;
      await shot(`failed-tab-${i + 1}`, tab).catch(() => {});
      console.error(`tab ${i + 1} was at ${tab.page.url()}`);
    }
    if (pageErrors.length > 0) console.error(`errors the pages logged:\n${pageErrors.join("\n")}`);
  });
  onTestFinished(async () => {
    await context.close().catch(() => {});
  });

  return {
    context,
    console: first,
    newTab,
    shot,
    expectOnlyPublicApi() {
      const elsewhere = requests.filter(
        (u) => u.origin !== origin || !(u.pathname === "/" || u.pathname === "/favicon.ico" || u.pathname.startsWith("/console/") || u.pathname.startsWith("/v1/")),
      );
      expect(elsewhere.map(String), "requests the console made outside its own files and the public /v1 API").toEqual([]);
      expect(requests.some((u) => u.pathname.startsWith("/v1/"))).toBe(true);
    },
  };
}

/**
 * The start most tests share: a conversation of `key`'s tenant created through the API with `body`, and a
 * session signed in with that key showing it.
 */
export async function openNewConversation(h: Harness, key: { key: string; api: Harness["alpha"]["api"] }, body: Record<string, unknown>) {
  const created = await key.api.post<{ id: string }>("/conversations", body);
  expect(created.status).toBe(201);
  const id = created.body.id;
  const s = await openSession(h);
  await s.console.signIn(key.key);
  await s.console.openConversation(id);
  return { id, s, c: s.console };
}
