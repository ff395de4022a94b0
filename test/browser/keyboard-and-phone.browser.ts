import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { REPLY_TIMEOUT_MS, UI_TIMEOUT_MS } from "./support/console-page.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openSession } from "./support/session.ts";

interface FocusedElement {
  tagName: string;
  id: string;
  textContent: string | null;
  closest(selector: string): { getAttribute(name: string): string | null } | null;
}

/** What has the keyboard focus: its tag, id, text, and the message it is in (if any). */
const focused = (page: Page) =>
  page.evaluate(() => {
    const el = (globalThis as unknown as { document: { activeElement: FocusedElement | null } }).document.activeElement;
    return {
      tag: el?.tagName.toLowerCase() ?? "",
      id: el?.id ?? "",
      text: (el?.textContent ?? "").trim(),
      message: el?.closest("li[data-message-id]")?.getAttribute("data-message-id") ?? null,
    };
  });

/** Presses Tab until the focus is on what `wanted` accepts (at most 80 times: a page with no way there fails). */
async function tabTo(page: Page, wanted: (f: Awaited<ReturnType<typeof focused>>) => boolean, what: string): Promise<void> {
  for (let i = 0; i < 80; i++) {
    if (wanted(await focused(page))) return;
    await page.keyboard.press("Tab");
  }
  throw new Error(`Tab never reached ${what}`);
}

/** Issue 17: keyboard usable, readable on a phone-width screen. */
describe("console: keyboard and phone width", () => {
  const h = useConsoleHarness();

  it("signs in, creates a conversation, chats and opens a reply's details with the keyboard alone", async () => {
    const s = await openSession(h);
    const page = s.console.page;
    await s.console.goto();
    // The key field has the focus on arrival.
    expect(await focused(page)).toMatchObject({ tag: "input", id: "api-key" });
    await page.keyboard.type(h.alpha.key);
    await page.keyboard.press("Enter");
    await s.console.signOutButton.waitFor({ timeout: UI_TIMEOUT_MS });

    await tabTo(page, (f) => f.tag === "a" && f.text === "New conversation", "the New conversation link");
    await page.keyboard.press("Enter");
    await tabTo(page, (f) => f.id === "nc-title", "the Title field");
    await page.keyboard.type("Typed, not clicked");
    await tabTo(page, (f) => f.id === "nc-params", "the Other params field");
    await page.keyboard.type('{"simulate":{"reply_tokens":8}}');
    await tabTo(page, (f) => f.tag === "button" && f.text === "Create conversation", "the Create conversation button");
    await page.keyboard.press("Enter");
    await s.console.heading("Typed, not clicked").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("created from the keyboard");

    await tabTo(page, (f) => f.id === "composer-input", "the message box");
    await page.keyboard.type("Hello from the keyboard");
    await page.keyboard.press("Enter");
    // An 8-token reply may end before a look sees it in flight: what counts is that the keyboard's send made one.
    let replyId = "";
    await expect
      .poll(async () => {
        const reply = await s.console.lastReply();
        replyId = reply?.status === "completed" && reply.id.startsWith("msg_") ? reply.id : "";
        return replyId;
      }, { timeout: REPLY_TIMEOUT_MS, message: "the reply to the message sent with Enter is shown completed" })
      .not.toBe("");
    expect((await s.console.messages()).map((m) => [m.role, m.content?.trim()])[0]).toEqual(["user", "Hello from the keyboard"]);

    // The reply's Details open from the keyboard (a <summary> takes Enter).
    await tabTo(page, (f) => f.tag === "summary" && f.text === "Details" && f.message === replyId, "the reply's Details");
    await page.keyboard.press("Enter");
    expect(await s.console.messageItem(replyId).locator("details.details").evaluate((d) => (d as unknown as { open: boolean }).open)).toBe(true);
    await s.shot("details opened from the keyboard");
    s.expectOnlyPublicApi();
  });

  it("fits a phone-width screen: one column, nothing wider than the screen, the list and a conversation in turn", async () => {
    const created = await h.alpha.api.post<{ id: string }>("/conversations", {
      model: "parley-sim-1",
      title: "On the phone",
      messages: [
        { role: "user", content: `A long word: ${"x".repeat(300)}` },
        { role: "assistant", content: "Short answer." },
      ],
    });
    expect(created.status).toBe(201);
    const s = await openSession(h);
    const c = s.console;
    await c.page.setViewportSize({ width: 375, height: 740 });
    await c.signIn(h.alpha.key);
    const widest = () => c.page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth);

    // Home: the list, full width.
    const link = c.page.getByRole("link", { name: /^On the phone/ });
    await link.waitFor({ timeout: UI_TIMEOUT_MS });
    expect(await widest()).toBeLessThanOrEqual(375);
    await s.shot("phone: the list");

    // A conversation: the list gives way to it, with a way back; the message box is on screen.
    await link.click();
    await c.heading("On the phone").waitFor({ timeout: UI_TIMEOUT_MS });
    expect(await c.page.getByRole("navigation", { name: "Conversations" }).isVisible()).toBe(false);
    const composer = c.page.getByRole("textbox", { name: "Message", exact: true });
    expect(await composer.isVisible()).toBe(true);
    const box = (await composer.boundingBox())!;
    expect(box.x + box.width).toBeLessThanOrEqual(375);
    expect(box.y + box.height).toBeLessThanOrEqual(740);
    expect(await widest()).toBeLessThanOrEqual(375);
    await s.shot("phone: a conversation");

    await c.page.getByRole("link", { name: "← Conversations" }).click();
    await link.waitFor({ timeout: UI_TIMEOUT_MS });
    s.expectOnlyPublicApi();
  });
});
