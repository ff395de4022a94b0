import { messageTokens } from "../context/tokens.ts";

/** How a `summarize` conversation's running summary is sent for a turn: right after the system prompt. */
export const summaryMessage = (summary: string) => ({
  role: "system" as const,
  content: `Summary of the earlier conversation:\n${summary}`,
});

/** The tokens the summary takes when sent (stored with it, so a turn does not count it again). */
export const summaryMessageTokens = (summary: string): number => messageTokens(summaryMessage(summary).content);
