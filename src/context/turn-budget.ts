import type { ContextStrategy } from "../db/schema.ts";
import { InvalidRequestError } from "../domain/errors.ts";
import type { ContextWindow } from "./context-windows.ts";
import { messageTokens } from "./tokens.ts";

/** What a turn's history may take of a model's window: the window, less the reply's reserve and the system prompt. */
export interface TurnBudget {
  model: string;
  contextTokens: number;
  replyReserveTokens: number;
  systemTokens: number;
  /** Tokens left for the conversation's messages. */
  historyTokens: number;
}

/** The reply's reserve is the turn's `max_tokens` (or `max_completion_tokens`) when it sets one, else the model's default. */
export function turnBudget(
  model: string,
  window: ContextWindow,
  system: string | null,
  params: Record<string, unknown>,
): TurnBudget {
  const asked = [params.max_tokens, params.max_completion_tokens].find((v): v is number => Number.isInteger(v) && (v as number) > 0);
  const replyReserveTokens = asked ?? window.replyReserveTokens;
  const systemTokens = system ? messageTokens(system) : 0;
  return {
    model,
    contextTokens: window.contextTokens,
    replyReserveTokens,
    systemTokens,
    // Counted in o200k_base tokens: the model's own tokens, divided by how many of them one of ours makes.
    historyTokens: Math.floor((window.contextTokens - replyReserveTokens) / window.tokenRatio) - systemTokens,
  };
}

/** A turn that cannot be sent to its model: a 400 when refused up front, a reply's error when found later. */
export class ContextLengthExceededError extends InvalidRequestError {
  constructor(budget: TurnBudget, needed: { what: string; tokens: number }, param: string | null) {
    super(
      `${needed.what} takes ${needed.tokens} tokens, but ${budget.model} has ${budget.contextTokens}: ` +
        `${budget.systemTokens} go to the system prompt and ${budget.replyReserveTokens} are kept for the reply ` +
        `(max_tokens), leaving ${Math.max(0, budget.historyTokens)}.`,
      param,
      "context_length_exceeded",
    );
  }
}

/**
 * Refuses, before anything is stored, a turn that could never be sent: its
 * own new messages do not fit (any strategy), or under `strict` the whole
 * history with them does not.
 */
export function assertTurnFits(
  budget: TurnBudget,
  turn: { strategy: ContextStrategy; newTokens: number; historyTokensAfter: number; param: string },
): void {
  if (turn.newTokens > budget.historyTokens) {
    throw new ContextLengthExceededError(budget, { what: "The new message", tokens: turn.newTokens }, turn.param);
  }
  if (turn.strategy === "strict" && turn.historyTokensAfter > budget.historyTokens) {
    throw new ContextLengthExceededError(
      budget,
      { what: "The conversation's history with the new message", tokens: turn.historyTokensAfter },
      turn.param,
    );
  }
}
