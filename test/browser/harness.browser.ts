import { describe, expect, it } from "vitest";
import { useConsoleHarness } from "./support/harness.ts";
import { openSession } from "./support/session.ts";

/**
 * What the other browser tests stand on: Chromium loads pages from the Parley under test, the tenants' keys
 * made over /admin/keys are accepted by /v1 from inside the page, and a key revoked over /admin is refused
 * from the very next request (the sign-in tests revoke a key mid-session and expect the console to notice).
 */
describe("browser harness", () => {
  const h = useConsoleHarness();

  it("a page of the Parley under test reaches /v1 with each tenant's key, and a revoked key is refused at once", async () => {
    const s = await openSession(h);
    const page = s.console.page;
    await page.goto(`${h.baseUrl}/openapi.json`);
    const doc = JSON.parse((await page.locator("body").textContent()) ?? "");
    expect(Object.keys(doc.paths)).toContain("/v1/conversations");
    await s.shot("openapi document");

    const statusOf = (key: string) =>
      page.evaluate(async (k) => (await fetch("/v1/models", { headers: { authorization: `Bearer ${k}` } })).status, key);
    const modelsOf = (key: string) =>
      page.evaluate(async (k) => ((await (await fetch("/v1/models", { headers: { authorization: `Bearer ${k}` } })).json()) as { data: { id: string }[] }).data.map((m) => m.id), key);

    expect(await modelsOf(h.alpha.key)).toContain("parley-sim-1");
    expect(await statusOf(h.beta.key)).toBe(200);

    const doomed = await h.newKey("alpha");
    expect(await statusOf(doomed.key)).toBe(200);
    await h.revoke(doomed);
    expect(await statusOf(doomed.key)).toBe(401);
    expect(await statusOf(h.alpha.key)).toBe(200);
  });
});
