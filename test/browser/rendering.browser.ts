import { describe, expect, it } from "vitest";
import { UI_TIMEOUT_MS, normalized } from "./support/console-page.ts";
import { PNG_DATA_URL } from "./support/fixtures.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openSession } from "./support/session.ts";

/** Issue 17: what a conversation holds besides plain text — images, reasoning, tool calls and their results. */
describe("console: rendering messages", () => {
  const h = useConsoleHarness();

  it("shows an image part, reasoning, a tool call, its result, and markup in a message as text", async () => {
    const created = await h.alpha.api.post<{ id: string }>("/conversations", {
      model: "parley-sim-1",
      title: "Weather with tools",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is the weather where this photo was taken?" },
            { type: "image_url", image_url: { url: PNG_DATA_URL } },
          ],
        },
        {
          role: "assistant",
          content: null,
          reasoning_content: "The photo shows the Tagus: ask the weather tool for Lisbon.",
          tool_calls: [{ id: "call_weather_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Lisbon"}' } }],
        },
        { role: "tool", tool_call_id: "call_weather_1", content: '{"temp_c":21,"sky":"clear"}' },
        { role: "assistant", content: "It is 21 °C and clear in Lisbon." },
        { role: "user", content: "<b>not bold</b> <img src=x alt=injected>" },
      ],
    });
    expect(created.status).toBe(201);

    const s = await openSession(h);
    const c = s.console;
    await c.signIn(h.alpha.key);
    await c.openConversation(created.body.id);
    await c.messageWithText("It is 21 °C and clear in Lisbon.").waitFor({ timeout: UI_TIMEOUT_MS });
    await s.shot("conversation with tools and an image");

    const shown = await c.messages();
    expect(shown.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant", "user"]);
    const [asking, calling, result, , markup] = shown;

    // The image part: an <img> with the contract's alt text, showing the data URL it was given.
    const image = c.messageItem(asking!.id).getByRole("img", { name: "Image 1", exact: true });
    await image.waitFor();
    expect(await image.getAttribute("src")).toBe(PNG_DATA_URL);
    expect(normalized(asking!.content)).toContain("What is the weather where this photo was taken?");

    // The tool call: its name and arguments.
    const call = c.messageItem(calling!.id).getByTestId("tool-call");
    await call.waitFor();
    const callText = normalized(await call.textContent());
    expect(callText).toContain("get_weather");
    expect(callText).toContain("Lisbon");

    // Reasoning, in its own `details`, readable once opened.
    const reasoning = await c.openDetails(c.messageItem(calling!.id), "Reasoning");
    await reasoning.getByText("ask the weather tool for Lisbon", { exact: false }).waitFor();
    await s.shot("reasoning opened");

    // The tool result names the call it answers.
    await c.messageItem(result!.id).getByText("Result of call_weather_1").waitFor();
    expect(normalized(result!.content)).toContain('{"temp_c":21,"sky":"clear"}');

    // Markup in a message is text, not elements.
    expect(normalized(markup!.content)).toBe("<b>not bold</b> <img src=x alt=injected>");
    const markupContent = c.messageItem(markup!.id).getByTestId("message-content");
    expect(await markupContent.locator("b").count()).toBe(0);
    expect(await markupContent.locator("img").count()).toBe(0);

    // Details: the message's status among its facts.
    const details = await c.openDetails(c.messageItem(shown[3]!.id), "Details");
    await details.getByText("completed", { exact: false }).first().waitFor();
    await s.shot("details opened");
    s.expectOnlyPublicApi();
  });
});
