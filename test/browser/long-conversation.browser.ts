import { describe, expect, it } from "vitest";
import { UI_TIMEOUT_MS } from "./support/console-page.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openSession } from "./support/session.ts";

const COUNT = 500;
const label = (n: number) => `message ${String(n).padStart(4, "0")}`;

/** Issue 17: scroll back through a 500-message conversation. */
describe("console: a long conversation", () => {
  const h = useConsoleHarness();

  it("opens a 500-message conversation at its newest message and scrolls back to its first", async () => {
    const messages = Array.from({ length: COUNT }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: label(i + 1) }));
    const created = await h.alpha.api.post<{ id: string; message_count: number }>("/conversations", { model: "parley-sim-1", title: "Five hundred messages", messages });
    expect(created.status).toBe(201);
    expect(created.body.message_count).toBe(COUNT);

    const s = await openSession(h);
    const c = s.console;
    await c.signIn(h.alpha.key);
    await c.openConversation(created.body.id);
    const newest = c.messageWithText(label(COUNT));
    await newest.waitFor({ timeout: UI_TIMEOUT_MS });
    // Opened at the end of the conversation, where a reply would appear.
    await expect.poll(() => c.inViewport(newest), { timeout: UI_TIMEOUT_MS, message: "the newest message is in view" }).toBe(true);
    await s.shot("opened at the newest message");

    const oldest = c.messageWithText(label(1));
    await c.scrollBackUntil(oldest);
    await expect.poll(() => c.inViewport(oldest), { timeout: UI_TIMEOUT_MS, message: "the first message is in view" }).toBe(true);
    await s.shot("scrolled back to the first message");

    const shown = await c.messages();
    expect(shown).toHaveLength(COUNT);
    expect(new Set(shown.map((m) => m.id)).size).toBe(COUNT);
    expect(shown.map((m) => m.seq)).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1));
    expect(shown.map((m) => m.content?.trim())).toEqual(messages.map((m) => m.content));
    expect(shown.map((m) => m.role)).toEqual(messages.map((m) => m.role));
    s.expectOnlyPublicApi();
  });
});
