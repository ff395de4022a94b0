import type { ContextStrategy, ConversationRow } from "../db/schema.ts";

/**
 * A turn's own settings over its conversation's, from Parley's own keys in the
 * reply's params (never sent upstream, see NOT_UPSTREAM in the provider):
 * `instructions`, the system prompt of this turn only (the Responses API's,
 * which a later turn does not inherit), and `truncation` (`auto` fits the
 * history by dropping the oldest messages, `disabled` refuses a turn whose
 * history does not fit, as `strict` does).
 */
export interface TurnSettings {
  system: string | null;
  contextStrategy: ContextStrategy;
}

export function turnSettings(
  conversation: Pick<ConversationRow, "system" | "contextStrategy">,
  params: Record<string, unknown>,
): TurnSettings {
  const { instructions, truncation } = params;
  return {
    system: typeof instructions === "string" ? instructions : conversation.system,
    contextStrategy: truncation === "auto" ? "auto" : truncation === "disabled" ? "strict" : conversation.contextStrategy,
  };
}
