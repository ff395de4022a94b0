import { describe, expect, it } from "vitest";
import { REPLY_TIMEOUT_MS, UI_TIMEOUT_MS, normalized } from "./support/console-page.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openNewConversation, openSession } from "./support/session.ts";

interface StoredMessage {
  id: string;
  role: string;
  status: string;
  content: string | null;
}

/** Issue 17: regenerate, fork, edit a title, search. */
describe("console: changing the history", () => {
  const h = useConsoleHarness();

  const messagesOf = async (conversationId: string) => {
    const res = await h.alpha.api.get<{ data: StoredMessage[] }>(`/conversations/${conversationId}/messages?limit=100`);
    expect(res.status).toBe(200);
    return res.body.data;
  };

  it("regenerates the last reply: a new reply in its place, the old one gone", async () => {
    const created = await h.alpha.api.post<{ id: string }>("/conversations", { model: "parley-sim-1", title: "Regenerate me" });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const turn = await h.alpha.api.post<{ reply: StoredMessage }>(`/conversations/${id}/messages`, { role: "user", content: "Name three bridges." });
    expect(turn.status).toBe(201);
    const old = turn.body.reply;
    expect(old.status).toBe("completed");
    // The simulator's reply is a function of the history and `seed`: a new seed makes the new reply's text differ.
    expect((await h.alpha.api.patch(`/conversations/${id}`, { params: { seed: 7 } })).status).toBe(200);

    const s = await openSession(h);
    const c = s.console;
    await c.signIn(h.alpha.key);
    await c.openConversation(id);
    await c.waitForContent(old.id, old.content);
    await s.shot("before regenerate");

    await c.messageItem(old.id).getByRole("button", { name: "Regenerate", exact: true }).click();
    await expect
      .poll(async () => { const last = await c.lastReply(); return last !== undefined && last.id.startsWith("msg_") && last.id !== old.id; }, { timeout: UI_TIMEOUT_MS, message: "a new reply is shown last" })
      .toBe(true);
    const fresh = await c.lastReply();
    expect((await c.messages()).some((m) => m.id === old.id)).toBe(false);
    await c.waitForStatus(fresh!.id, "completed", REPLY_TIMEOUT_MS);
    await s.shot("regenerated");

    const stored = await messagesOf(id);
    expect(stored.map((m) => m.id)).toEqual([stored[0]!.id, fresh!.id]);
    const storedReply = stored[1]!;
    await c.waitForContent(fresh!.id, storedReply.content);
    expect(normalized(storedReply.content)).not.toBe(normalized(old.content));
    expect((await c.messages()).map((m) => m.role)).toEqual(["user", "assistant"]);
    s.expectOnlyPublicApi();
  });

  it("forks from a message: a new conversation holding the history up to it", async () => {
    const history = [
      { role: "user", content: "fork question one" },
      { role: "assistant", content: "fork answer one" },
      { role: "user", content: "fork question two" },
      { role: "assistant", content: "fork answer two" },
    ];
    const created = await h.alpha.api.post<{ id: string }>("/conversations", { model: "parley-sim-1", title: "Fork me", messages: history });
    expect(created.status).toBe(201);
    const source = created.body.id;
    const sourceMessages = await messagesOf(source);

    const s = await openSession(h);
    const c = s.console;
    await c.signIn(h.alpha.key);
    await c.openConversation(source);
    await c.messageWithText("fork answer two").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("source conversation");

    await c.messageItem(sourceMessages[1]!.id).getByRole("button", { name: "Fork from here", exact: true }).click();
    await expect.poll(() => c.route(), { timeout: UI_TIMEOUT_MS, message: "the console went to the fork" }).toMatch(/^#\/c\/conv_/);
    await expect.poll(() => c.route(), { timeout: UI_TIMEOUT_MS }).not.toBe(`#/c/${source}`);
    const fork = c.route().slice("#/c/".length);
    await c.messageWithText("fork answer one").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("the fork");

    await expect.poll(async () => (await c.messages()).map((m) => normalized(m.content)), { timeout: UI_TIMEOUT_MS }).toEqual(["fork question one", "fork answer one"]);
    expect((await messagesOf(fork)).map((m) => m.content)).toEqual(["fork question one", "fork answer one"]);
    expect((await messagesOf(source)).map((m) => m.content)).toEqual(history.map((m) => m.content));
    s.expectOnlyPublicApi();
  });

  it("edits a title: the heading and the list show it, and Cancel changes nothing", async () => {
    const { id, s, c } = await openNewConversation(h, h.alpha, { model: "parley-sim-1", title: "Old title" });
    await c.heading("Old title").waitFor({ timeout: UI_TIMEOUT_MS });

    await c.main.getByRole("button", { name: "Edit title", exact: true }).click();
    await c.main.getByLabel("Title", { exact: true }).fill("Not kept");
    await c.main.getByRole("button", { name: "Cancel", exact: true }).click();
    await c.heading("Old title").waitFor({ timeout: UI_TIMEOUT_MS });
    expect((await h.alpha.api.get(`/conversations/${id}`)).body.title).toBe("Old title");

    await c.main.getByRole("button", { name: "Edit title", exact: true }).click();
    await c.main.getByLabel("Title", { exact: true }).fill("Lisbon, revised");
    await s.shot("editing the title");
    await c.main.getByRole("button", { name: "Save title", exact: true }).click();
    await c.heading("Lisbon, revised").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("title saved");
    expect((await h.alpha.api.get(`/conversations/${id}`)).body.title).toBe("Lisbon, revised");

    await c.goto("#/");
    await expect
      .poll(async () => ((await c.conversationItem(id).count()) > 0 ? normalized(await c.conversationItem(id).getByRole("link").first().textContent()) : ""), { timeout: UI_TIMEOUT_MS })
      .toMatch(/^Lisbon, revised/);
    await s.shot("the list shows the new title");
    s.expectOnlyPublicApi();
  });

  it("search narrows the conversation list to the titles that match", async () => {
    const key = await h.newKey("searcher");
    const make = async (title: string) => {
      const res = await key.api.post<{ id: string }>("/conversations", { model: "parley-sim-1", title });
      expect(res.status).toBe(201);
      return res.body.id;
    };
    const lisbonTrip = await make("Lisbon trip planning");
    const porto = await make("Porto wine tasting");
    const lisbonFood = await make("Lisbon food notes");

    const s = await openSession(h);
    const c = s.console;
    await c.signIn(key.key);
    await expect.poll(async () => (await c.listedConversationIds()).sort(), { timeout: UI_TIMEOUT_MS }).toEqual([lisbonTrip, porto, lisbonFood].sort());
    await s.shot("all conversations");

    await c.search.fill("Lisbon");
    await expect.poll(async () => (await c.listedConversationIds()).sort(), { timeout: UI_TIMEOUT_MS, message: "only the Lisbon conversations are listed" }).toEqual([lisbonTrip, lisbonFood].sort());
    await s.shot("searched for Lisbon");

    await c.search.fill("no such title qzx");
    await expect.poll(() => c.listedConversationIds(), { timeout: UI_TIMEOUT_MS }).toEqual([]);
    await s.shot("searched for nothing that matches");

    await c.search.fill("");
    await expect.poll(async () => (await c.listedConversationIds()).sort(), { timeout: UI_TIMEOUT_MS }).toEqual([lisbonTrip, porto, lisbonFood].sort());
    s.expectOnlyPublicApi();
  });
});
