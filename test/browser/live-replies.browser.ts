import { describe, expect, it } from "vitest";
import { REPLY_TIMEOUT_MS, UI_TIMEOUT_MS, normalized } from "./support/console-page.ts";
import { useConsoleHarness, type TenantKey } from "./support/harness.ts";
import { openNewConversation, openSession } from "./support/session.ts";

interface StoredMessage {
  id: string;
  status: string;
  content: string | null;
  role: string;
}

/** A reply paced in real time by the simulator: long enough to stop, reload or follow it mid-way. */
const SLOW = { reply_tokens: 300, tokens_per_second: 20 };

async function storedMessage(key: TenantKey, conversationId: string, messageId: string): Promise<StoredMessage> {
  const res = await key.api.get<StoredMessage>(`/conversations/${conversationId}/messages/${messageId}`);
  expect(res.status).toBe(200);
  return res.body;
}

/** Issue 17: send, see tokens arrive, stop, reload mid-reply, follow from a second tab. */
describe("console: replies in flight", () => {
  const h = useConsoleHarness();

  it("creates a conversation with the form, sends, sees tokens arrive, and Stop keeps the partial reply", async () => {
    const s = await openSession(h);
    const c = s.console;
    await c.signIn(h.alpha.key);
    await c.page.getByRole("link", { name: "New conversation", exact: true }).click();
    await c.newConversationForm.waitFor();
    await s.shot("new conversation form");
    const id = await c.createConversation({
      model: "parley-sim-1",
      title: "Stop me",
      otherParams: JSON.stringify({ simulate: { reply_tokens: 300, tokens_per_second: 25 } }),
    });
    await c.heading("Stop me").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("conversation created");

    // What the form made, as the API has it: the model, the title, and the JSON merged into params.
    const conversation = await h.alpha.api.get(`/conversations/${id}`);
    expect(conversation.status).toBe(200);
    expect(conversation.body).toMatchObject({ model: "parley-sim-1", title: "Stop me" });
    expect(conversation.body.params.simulate).toEqual({ reply_tokens: 300, tokens_per_second: 25 });

    await c.send("Tell me about Lisbon, at length.");
    const replyId = await c.replyInFlight();
    await c.status("Generating").waitFor({ timeout: UI_TIMEOUT_MS });
    await c.seeTokensArrive(replyId);
    await s.shot("tokens arriving");

    await c.stopButton.click();
    await c.waitForStatus(replyId, "cancelled", UI_TIMEOUT_MS);
    await c.status("Reply cancelled").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("stopped");

    const stored = await storedMessage(h.alpha, id, replyId);
    expect(stored.status).toBe("cancelled");
    expect(normalized(stored.content).length).toBeGreaterThan(0);
    // Partial: well short of the 300 words asked for.
    expect(normalized(stored.content).split(" ").length).toBeLessThan(300);
    // The partial content is kept, as stored, and shown once.
    await c.waitForContent(replyId, stored.content);
    expect((await c.messages()).filter((m) => m.id === replyId)).toHaveLength(1);
    expect(await c.stopButton.count()).toBe(0);
    s.expectOnlyPublicApi();
  });

  it("a reload mid-reply: the same reply keeps growing and ends completed, its text as stored, nothing lost or doubled", async () => {
    const { id, s, c } = await openNewConversation(h, h.alpha, { model: "parley-sim-1", title: "Reload me", params: { simulate: SLOW } });
    await c.send("Describe the tram lines of Lisbon.");
    const replyId = await c.replyInFlight();
    const before = await c.seeTokensArrive(replyId, 20);
    await s.shot("before reload");

    // After the reload the tab asks for the reply's events after the last one it had (Last-Event-ID), not from the start.
    const resumed = c.page.waitForRequest((r) => r.url().includes(`/messages/${replyId}/events`), { timeout: UI_TIMEOUT_MS });
    await c.page.reload();
    const lastEventId = (await resumed).headers()["last-event-id"];
    expect(lastEventId).toMatch(/^\d+-\d+$/);
    await c.messageItem(replyId).waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("just after reload");
    // Still in flight, and growing past what it had before the reload: followed live, not loaded once.
    await c.seeTokensArrive(replyId, before + 1);
    await s.shot("growing after reload");

    await c.waitForStatus(replyId, "completed");
    await c.status("Reply completed").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("completed after reload");
    const stored = await storedMessage(h.alpha, id, replyId);
    expect(stored.status).toBe("completed");
    await c.waitForContent(replyId, stored.content);
    const shown = await c.messages();
    expect(shown.filter((m) => m.id === replyId)).toHaveLength(1);
    expect(shown.map((m) => m.role)).toEqual(["user", "assistant"]);
    s.expectOnlyPublicApi();
  });

  it("a second tab follows the reply the first tab asked for, and ends with the same text", async () => {
    const created = await h.alpha.api.post<{ id: string }>("/conversations", { model: "parley-sim-1", title: "Follow me", params: { simulate: SLOW } });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const s = await openSession(h);
    const first = s.console;
    await first.signIn(h.alpha.key);
    await first.openConversation(id);
    // sessionStorage is per tab: the second tab signs in itself.
    const second = await s.newTab();
    await second.signIn(h.alpha.key);
    await second.openConversation(id);
    await s.shot("second tab, before the send", second);

    await first.send("What should I see in Porto?");
    const replyId = await first.replyInFlight();
    await first.status("Generating").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("first tab sending", first);

    // The second tab learns of the reply (by polling the conversation) and follows its events.
    await expect
      .poll(async () => (await second.message(replyId))?.status, { timeout: UI_TIMEOUT_MS, message: "the second tab shows the reply in flight" })
      .toMatch(/^(queued|in_progress)$/);
    await second.seeTokensArrive(replyId);
    await s.shot("second tab following", second);

    await second.waitForStatus(replyId, "completed", REPLY_TIMEOUT_MS);
    await first.waitForStatus(replyId, "completed", REPLY_TIMEOUT_MS);
    await first.status("Reply completed").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("second tab, completed", second);
    await s.shot("first tab, completed", first);

    const stored = await storedMessage(h.alpha, id, replyId);
    expect(stored.status).toBe("completed");
    await second.waitForContent(replyId, stored.content);
    await first.waitForContent(replyId, stored.content);
    expect((await second.messages()).map((m) => m.role)).toEqual(["user", "assistant"]);
    s.expectOnlyPublicApi();
  });
});
