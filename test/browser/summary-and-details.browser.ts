import { describe, expect, it } from "vitest";
import { REPLY_TIMEOUT_MS, UI_TIMEOUT_MS, normalized } from "./support/console-page.ts";
import { useConsoleHarness } from "./support/harness.ts";
import { openNewConversation } from "./support/session.ts";

// One token a word: a 300-token window keeping 50 for the reply leaves 250 for the history.
const words = (n: number) => "hello ".repeat(n).trim();

interface StoredReply {
  id: string;
  status: string;
  model: string;
  finish_reason: string;
  ttft_ms: number | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  context: { messages: number; tokens: number };
  tokens: number;
}

/** Issue 17: a reply's details (tokens, model, finish reason, usage, time to first token, context), and a `summarize` conversation's running summary. */
describe("console: a reply's details and a conversation's summary", () => {
  const h = useConsoleHarness({
    MODEL_CONTEXT_WINDOWS: [{ models: ["parley-sim-1"], context_tokens: 300, reply_reserve_tokens: 50, token_ratio: 1 }],
  });

  it("shows what the reply was, as the API stored it, and the summary of what no longer fits", async () => {
    const { id, s, c } = await openNewConversation(h, h.alpha, {
      model: "parley-sim-1",
      title: "Summarized",
      context_strategy: "summarize",
      // The first token comes after 300 ms; the reply is 12 tokens.
      params: { simulate: { reply_tokens: 12, ttft_ms: 300 } },
      messages: [
        { role: "user", content: words(96) },
        { role: "assistant", content: words(96) },
      ],
    });
    // 100 + 100 + 60 tokens do not fit in 250: the first message is left out of this turn and summarized.
    await c.send(words(56));
    const replyId = await c.replyInFlight();
    await c.waitForStatus(replyId, "completed", REPLY_TIMEOUT_MS);
    const stored = (await h.alpha.api.get<StoredReply>(`/conversations/${id}/messages/${replyId}`)).body;
    expect(stored.ttft_ms).toBeGreaterThanOrEqual(300);

    const detailsBox = await c.openDetails(c.messageItem(replyId), "Details");
    const terms = await detailsBox.locator("dt").allTextContents();
    const values = await detailsBox.locator("dd").allTextContents();
    const details = Object.fromEntries(terms.map((t, i) => [t, normalized(values[i])]));
    await s.shot("reply details");
    expect(details).toMatchObject({
      Id: replyId,
      Status: "completed",
      Tokens: String(stored.tokens),
      Model: stored.model,
      "Finish reason": stored.finish_reason,
      Usage: `${stored.usage.prompt_tokens} prompt + ${stored.usage.completion_tokens} completion = ${stored.usage.total_tokens} tokens`,
      "Time to first token": `${stored.ttft_ms} ms`,
      "Context sent": `${stored.context.messages} messages, ${stored.context.tokens} tokens`,
    });

    // The summary is written in the background after the turn; the open page picks it up by itself.
    const summary = c.page.getByRole("region", { name: "Summary", exact: true });
    await summary.waitFor({ timeout: UI_TIMEOUT_MS });
    const conversation = (await h.alpha.api.get<{ summary: { content: string; through_seq: number } }>(`/conversations/${id}`)).body;
    expect(conversation.summary.through_seq).toBeGreaterThanOrEqual(1);
    await (await c.openDetails(summary, `Summary of the messages up to ${conversation.summary.through_seq}`)).waitFor();
    await expect
      .poll(async () => normalized(await summary.getByTestId("summary-content").textContent()), { timeout: UI_TIMEOUT_MS })
      .toBe(normalized(conversation.summary.content));
    await s.shot("summary opened");
    s.expectOnlyPublicApi();
  });
});
