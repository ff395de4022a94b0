import { describe, expect, it } from "vitest";
import { accessibilityViolations } from "./support/accessibility.ts";
import { UI_TIMEOUT_MS } from "./support/console-page.ts";
import { PNG_DATA_URL } from "./support/fixtures.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openSession } from "./support/session.ts";

/** Every screen of the console, in the states a user meets, checked by axe-core against WCAG 2.x A and AA. */
describe("console: accessibility", () => {
  const h = useConsoleHarness();

  it("each screen passes axe-core's WCAG 2 A/AA rules", async () => {
    const rich = await h.alpha.api.post<{ id: string }>("/conversations", {
      model: "parley-sim-1",
      title: "Weather with tools",
      system: "You are a weather assistant.",
      messages: [
        { role: "user", content: [{ type: "text", text: "Where is this?" }, { type: "image_url", image_url: { url: PNG_DATA_URL } }] },
        {
          role: "assistant",
          content: null,
          reasoning_content: "Looks like Lisbon.",
          tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Lisbon"}' } }],
        },
        { role: "tool", tool_call_id: "call_1", content: '{"temp_c":21}' },
        { role: "assistant", content: "It is 21 °C in Lisbon." },
      ],
    });
    expect(rich.status).toBe(201);
    const slow = await h.alpha.api.post<{ id: string }>("/conversations", {
      model: "parley-sim-1",
      title: "A slow reply",
      params: { simulate: { reply_tokens: 400, tokens_per_second: 20 } },
    });
    expect(slow.status).toBe(201);

    const s = await openSession(h);
    const c = s.console;
    const found: Record<string, string[]> = {};
    const check = async (screen: string) => {
      await s.shot(screen);
      found[screen] = await accessibilityViolations(c.page);
    };

    await c.submitKey("prly_000000000000_not-a-key");
    await c.alert("not accepted").waitFor({ timeout: UI_TIMEOUT_MS });
    await check("sign-in with the wrong-key alert");

    await c.signIn(h.alpha.key);
    await c.conversationItem(rich.body.id).waitFor({ timeout: UI_TIMEOUT_MS });
    await check("conversation list");

    await c.page.getByRole("link", { name: "New conversation", exact: true }).click();
    await c.newConversationForm.waitFor();
    await check("new conversation form");

    await c.openConversation(rich.body.id);
    await c.messageWithText("It is 21 °C in Lisbon.").waitFor({ timeout: UI_TIMEOUT_MS });
    const items = c.messageList.locator("li[data-message-id]");
    await c.openDetails(items.nth(1), "Reasoning");
    await c.openDetails(items.nth(3), "Details");
    await check("conversation with an image, reasoning, a tool call and details");

    await c.main.getByRole("button", { name: "Edit title", exact: true }).click();
    await c.main.getByRole("button", { name: "Save title", exact: true }).waitFor();
    await check("editing the title");

    await c.openConversation(slow.body.id);
    await c.send("Take your time.");
    await c.replyInFlight();
    await c.stopButton.waitFor();
    await check("reply in flight");
    await c.stopButton.click();
    await c.status("Reply cancelled").waitFor({ timeout: UI_TIMEOUT_MS });

    await c.goto("#/c/conv_00000000000000000000000000");
    await c.alert("Conversation not found").waitFor({ timeout: UI_TIMEOUT_MS });
    await check("conversation not found");

    expect(found).toEqual(Object.fromEntries(Object.keys(found).map((k) => [k, []])));
  });
});
