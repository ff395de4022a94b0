import { countTokens } from "gpt-tokenizer/encoding/o200k_base";

/**
 * Tokens a message takes in a model's prompt: its text in o200k_base (the
 * GPT-4o tokenizer, pure JS in gpt-tokenizer), plus what chat templates spend
 * on the role and the separators around it. Exact for the GPT-4o family;
 * other families' tokenizers differ by a few percent on English (Llama 3) to
 * more on code and other languages, which the reply reserve absorbs.
 */
export const MESSAGE_OVERHEAD_TOKENS = 4;

export function messageTokens(content: string): number {
  return countTokens(content) + MESSAGE_OVERHEAD_TOKENS;
}
