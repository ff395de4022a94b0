import { z } from "zod";

/** How many tokens a model takes in all, and how many of them a reply is kept for. */
export interface ContextWindow {
  contextTokens: number;
  replyReserveTokens: number;
  /**
   * The model's tokens per o200k_base token (what Parley counts). Measured on
   * this repo's README prose, its TypeScript, and German text: Llama 3 1.00,
   * 1.00, 1.31; Mistral (v1 SentencePiece) 1.15, 1.23, 1.57.
   */
  tokenRatio: number;
}

/**
 * One entry of `MODEL_CONTEXT_WINDOWS`: the models whose name contains
 * `match` (case-insensitive), or is in `models`. Entries are tried in order,
 * before the built-in families.
 */
export const contextWindowConfigSchema = z
  .object({
    match: z.string().min(1).optional(),
    models: z.array(z.string().min(1)).default([]),
    context_tokens: z.number().int().min(256),
    reply_reserve_tokens: z.number().int().min(1),
    token_ratio: z.number().min(0.5).max(4).default(1),
  })
  .refine((w) => w.match !== undefined || w.models.length > 0, { message: "needs `match` or `models`" })
  .refine((w) => w.reply_reserve_tokens < w.context_tokens, { message: "reply_reserve_tokens must be below context_tokens" });
export type ContextWindowConfig = z.infer<typeof contextWindowConfigSchema>;

/**
 * Well-known families by a part of their name, as hosts name them
 * (`meta-llama/Llama-3.3-70B-Instruct-Turbo`, `gpt-4o-mini`, `qwen2.5:7b`).
 * More specific names come first. The reserve is what a reply may use when a
 * request sets no `max_tokens`.
 */
const KNOWN_FAMILIES: (Omit<ContextWindow, "tokenRatio"> & { match: string; tokenRatio?: number })[] = [
  { match: "parley-sim", contextTokens: 8_192, replyReserveTokens: 1_024 },
  { match: "gpt-4.1", contextTokens: 1_047_576, replyReserveTokens: 32_768 },
  { match: "gpt-4o", contextTokens: 128_000, replyReserveTokens: 16_384 },
  { match: "gpt-4-turbo", contextTokens: 128_000, replyReserveTokens: 4_096 },
  { match: "gpt-3.5-turbo", contextTokens: 16_385, replyReserveTokens: 4_096 },
  { match: "llama-3.1", contextTokens: 131_072, replyReserveTokens: 4_096 },
  { match: "llama-3.2", contextTokens: 131_072, replyReserveTokens: 4_096 },
  { match: "llama-3.3", contextTokens: 131_072, replyReserveTokens: 4_096 },
  { match: "llama-3", contextTokens: 8_192, replyReserveTokens: 1_024 },
  { match: "llama3.1", contextTokens: 131_072, replyReserveTokens: 4_096 },
  { match: "llama3", contextTokens: 8_192, replyReserveTokens: 1_024 },
  { match: "mixtral-8x22b", contextTokens: 65_536, replyReserveTokens: 4_096, tokenRatio: 1.25 },
  { match: "mixtral", contextTokens: 32_768, replyReserveTokens: 4_096, tokenRatio: 1.25 },
  { match: "mistral", contextTokens: 32_768, replyReserveTokens: 4_096, tokenRatio: 1.25 },
  { match: "qwen2.5", contextTokens: 32_768, replyReserveTokens: 4_096 },
  { match: "qwen3", contextTokens: 40_960, replyReserveTokens: 4_096 },
  { match: "deepseek", contextTokens: 65_536, replyReserveTokens: 4_096 },
  { match: "gemma-2", contextTokens: 8_192, replyReserveTokens: 1_024 },
  { match: "gemma-3", contextTokens: 131_072, replyReserveTokens: 4_096 },
];

/** Looks up a model's window: configured entries first, then the known families, then the default. */
export class ContextWindows {
  readonly #configured: ContextWindowConfig[];
  readonly #fallback: ContextWindow;

  constructor(configured: ContextWindowConfig[], fallback: ContextWindow) {
    this.#configured = configured;
    this.#fallback = fallback;
  }

  forModel(model: string): ContextWindow {
    const name = model.toLowerCase();
    for (const w of this.#configured) {
      if (w.models.includes(model) || (w.match !== undefined && name.includes(w.match.toLowerCase()))) {
        return { contextTokens: w.context_tokens, replyReserveTokens: w.reply_reserve_tokens, tokenRatio: w.token_ratio };
      }
    }
    const known = KNOWN_FAMILIES.find((f) => name.includes(f.match));
    if (!known) return this.#fallback;
    return { contextTokens: known.contextTokens, replyReserveTokens: known.replyReserveTokens, tokenRatio: known.tokenRatio ?? 1 };
  }
}
