import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { UI_TIMEOUT_MS } from "./support/console-page.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openSession } from "./support/session.ts";

/** Issue 17: "A wrong or revoked key shows a clear message, and nothing of another tenant is ever shown." */
describe("console: keys and tenants", () => {
  const h = useConsoleHarness();

  it("signs in with a good key and keeps it out of the URL", async () => {
    const s = await openSession(h);
    const c = s.console;
    await c.goto("#/");
    await c.signInForm.waitFor();
    await s.shot("sign-in form");
    await c.signIn(h.alpha.key);
    // Attached, not visible: the list of a tenant with no conversations is empty.
    await c.conversationList.waitFor({ state: "attached", timeout: UI_TIMEOUT_MS });
    await s.shot("signed in");
    expect(c.page.url()).not.toContain(h.alpha.key);
    expect(await c.sessionItem("parley.apiKey")).toBe(h.alpha.key);
    s.expectOnlyPublicApi();
  });

  it("a wrong key is not accepted, and the console says so on the sign-in form", async () => {
    const s = await openSession(h);
    const c = s.console;
    await c.submitKey(`${h.alpha.prefix}_${"0".repeat(48)}`);
    await c.alert("not accepted").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("wrong key");
    expect(await c.signInForm.isVisible()).toBe(true);
    expect(await c.signOutButton.count()).toBe(0);
    expect(await c.sessionItem("parley.apiKey")).toBeNull();
  });

  it("a key revoked while signed in: the next action shows the alert and returns to the sign-in form", async () => {
    const key = await h.newKey("alpha");
    const created = await key.api.post<{ id: string }>("/conversations", { model: "parley-sim-1", title: "Before the revocation" });
    expect(created.status).toBe(201);
    const s = await openSession(h);
    const c = s.console;
    await c.signIn(key.key);
    await c.conversationItem(created.body.id).waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("signed in with the key");

    await h.revoke(key);
    // The next action that asks the API: opening the conversation.
    await c.conversationItem(created.body.id).getByRole("link").first().click();
    await c.alert("not accepted").waitFor({ timeout: UI_TIMEOUT_MS });
    await c.signInForm.waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("revoked: back at sign-in");
    expect(await c.signOutButton.count()).toBe(0);
    expect(await c.sessionItem("parley.apiKey")).toBeNull();
    s.expectOnlyPublicApi();
  });

  it("tenant B never sees tenant A's conversation, in the list, by search or by its address", async () => {
    const secretTitle = "Alpha's secret merger plan 7f3k";
    const secretText = "alpha private message: the merger closes on Friday";
    const alphas = await h.alpha.api.post<{ id: string }>("/conversations", {
      model: "parley-sim-1",
      title: secretTitle,
      messages: [
        { role: "user", content: secretText },
        { role: "assistant", content: "alpha private reply: noted" },
      ],
    });
    expect(alphas.status).toBe(201);
    const betas = await h.beta.api.post<{ id: string }>("/conversations", { model: "parley-sim-1", title: "Beta's own notes" });
    expect(betas.status).toBe(201);

    const s = await openSession(h);
    const c = s.console;
    await c.signIn(h.beta.key);
    // B's own conversation is listed: the list has loaded.
    await c.conversationItem(betas.body.id).waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("tenant B's list");
    expect(await c.listedConversationIds()).not.toContain(alphas.body.id);
    expect(await c.page.locator("body").innerText()).not.toContain(secretTitle);

    const searched = c.page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/conversations" && new URL(r.url()).searchParams.get("q") === "merger", { timeout: UI_TIMEOUT_MS });
    await c.search.fill("merger");
    await searched;
    await sleep(500); // the answer rendered
    await s.shot("tenant B searches for A's title");
    expect(await c.listedConversationIds()).not.toContain(alphas.body.id);
    expect(await c.page.locator("body").innerText()).not.toContain(secretTitle);

    await c.goto(`#/c/${alphas.body.id}`);
    await c.alert("Conversation not found").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("tenant B opens A's conversation");
    const shown = await c.page.locator("body").innerText();
    expect(shown).not.toContain(secretTitle);
    expect(shown).not.toContain(secretText);
    expect(shown).not.toContain("alpha private reply");
    expect(await c.messages()).toEqual([]);
    s.expectOnlyPublicApi();
  });
});
