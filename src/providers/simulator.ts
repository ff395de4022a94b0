/**
 * The built-in simulator: a ChatProvider that needs no network. Replies are
 * pseudo-English derived from the prompt (same request, same reply), paced
 * like a real model, and can be told to fail on demand through
 * `params.simulate`, so the whole pipeline can be exercised and load-tested
 * without an upstream.
 */
import { createHash } from "node:crypto";
import { setImmediate as nextTurn, setTimeout as wait } from "node:timers/promises";
import { z } from "zod";
import {
  ProviderError,
  type ChatChunk,
  type ChatMessage,
  type ChatProvider,
  type ChatRequest,
  type ChatResult,
  type FinishReason,
  type TokenUsage,
} from "./types.ts";

/** Longest reply a request may ask for: every token is held in memory before pacing starts. */
const MAX_REPLY_TOKENS = 100_000;

/** `params.simulate`: failure injection and pacing for one request. Unknown keys are an error, so a typo cannot silently disable a failure. */
export const simulateParamsSchema = z.strictObject({
  fail_after_tokens: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe("Fail with `simulated_failure` after this many deltas (0: before any). Not reached if the reply is shorter."),
  error_message: z.string().min(1).max(1000).optional().describe("Message of the simulated failure."),
  ttft_ms: z.number().int().min(0).max(600_000).optional().describe("Time to the first delta, in ms (0: none)."),
  tokens_per_second: z
    .number()
    .min(0)
    .max(1_000_000)
    .optional()
    .describe("Pace of the deltas after the first (0: as fast as possible)."),
  reply_tokens: z
    .number()
    .int()
    .min(0)
    .max(MAX_REPLY_TOKENS)
    .optional()
    .describe("Exact reply length in tokens, before `max_tokens` and `stop` apply."),
});
export type SimulateParams = z.infer<typeof simulateParamsSchema>;

export interface SimulatorOptions {
  /** Wait before the first delta (0: none). */
  ttftMs: number;
  /** Pace of the deltas after the first (0: as fast as possible). */
  tokensPerSecond: number;
  /** Injected in tests; must reject promptly when `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export function createSimulatorProvider(opts: SimulatorOptions): ChatProvider {
  if (!(opts.ttftMs >= 0) || !(opts.tokensPerSecond >= 0)) {
    throw new RangeError("simulator ttftMs and tokensPerSecond must be >= 0");
  }
  const sleep = opts.sleep ?? ((ms, signal) => wait(ms, undefined, { signal }));

  const streamChat = async function* (request: ChatRequest, signal: AbortSignal): AsyncGenerator<ChatChunk> {
    throwIfAborted(signal);
    const simulate = parseSimulateParams(request.params.simulate);
    const reply = planReply(request, simulate.reply_tokens);
    const ttftMs = simulate.ttft_ms ?? opts.ttftMs;
    const tokensPerSecond = simulate.tokens_per_second ?? opts.tokensPerSecond;
    const intervalMs = tokensPerSecond > 0 ? 1000 / tokensPerSecond : 0;
    const failAfter = simulate.fail_after_tokens;
    const failure = () =>
      new ProviderError(simulate.error_message ?? `simulated failure after ${failAfter} tokens`, {
        code: "simulated_failure",
      });

    if (ttftMs > 0) await sleep(ttftMs, signal);
    // setTimeout cannot wait much under a millisecond, so short intervals are
    // owed up and paid in one sleep: the average rate stays right at any pace.
    let owedMs = 0;
    let sinceYield = 0;
    for (const [i, token] of reply.tokens.entries()) {
      if (i > 0) {
        owedMs += intervalMs;
        if (owedMs >= 1) {
          await sleep(owedMs, signal);
          owedMs = 0;
          sinceYield = 0;
        } else if (++sinceYield >= 64) {
          // Unpaced, a long reply would otherwise hold the event loop to itself.
          await nextTurn(undefined, { signal });
          sinceYield = 0;
        }
      }
      if (i === failAfter) throw failure();
      throwIfAborted(signal);
      yield { type: "delta", content: token };
    }
    if (failAfter === reply.tokens.length) throw failure();
    yield { type: "finish", finishReason: reply.finishReason, usage: usageOf(request.messages, reply.tokens.length) };
  };

  return {
    name: "simulator",
    streamChat,
    // Collects the stream, pacing included: a real upstream's non-streamed
    // answer also arrives only once the whole reply is generated.
    async completeChat(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
      let content = "";
      for await (const chunk of streamChat(request, signal)) {
        if (chunk.type === "delta") content += chunk.content ?? "";
        else return { choices: [{ content, finishReason: chunk.finishReason }], usage: chunk.usage };
      }
      throw new Error("simulator stream ended without a finish chunk");
    },
  };
}

function parseSimulateParams(raw: unknown): SimulateParams {
  if (raw === undefined || raw === null) return {};
  const parsed = simulateParamsSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${["simulate", ...i.path].join(".")}: ${i.message}`);
  throw new ProviderError(`invalid simulate params: ${problems.join("; ")}`, { code: "invalid_simulate_params" });
}

interface PlannedReply {
  /** Deltas in order; the first has no leading space, so joined they are the text. */
  tokens: string[];
  finishReason: FinishReason;
}

/**
 * The whole reply, decided before any delta goes out: that is what lets a
 * stop sequence be cut out exactly even when it spans several tokens.
 */
function planReply(request: ChatRequest, replyTokens: number | undefined): PlannedReply {
  const random = mulberry32(seedOf(request));
  // Drawn even when overridden, so the words stay the same whatever the length.
  const defaultLength = 16 + Math.floor(random() * 49);
  const generated = composeTokens(random, replyTokens ?? defaultLength);

  const limit = maxTokensOf(request.params);
  const kept = limit !== null && limit < generated.length ? generated.slice(0, limit) : generated;
  // A stop sequence counts only if it is complete within what max_tokens allows, as with a real model.
  const stopAt = firstStop(kept.join(""), stopSequencesOf(request.params));
  if (stopAt !== null) return { tokens: cutAt(kept, stopAt), finishReason: "stop" };
  return { tokens: kept, finishReason: kept.length < generated.length ? "length" : "stop" };
}

/** The PRNG seed: the model and the conversation (and OpenAI's `seed` param, when given). */
function seedOf(request: ChatRequest): number {
  const seed = typeof request.params.seed === "number" ? request.params.seed : null;
  const messages = request.messages.map((m) => [m.role, m.content]);
  return createHash("sha256").update(JSON.stringify([request.model, messages, seed])).digest().readUInt32BE(0);
}

/**
 * mulberry32, written out rather than taken from a library: it is a few
 * lines, and a dependency upgrade that changed the sequence would change
 * every simulated reply (and every test expectation built on one).
 */
function mulberry32(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` words in sentences of 4–14, capitalised, with the odd comma, ending with a period. */
function composeTokens(random: () => number, count: number): string[] {
  const tokens: string[] = [];
  let leftInSentence = 0;
  for (let i = 0; i < count; i++) {
    const startsSentence = leftInSentence === 0;
    if (startsSentence) leftInSentence = 4 + Math.floor(random() * 11);
    let word = WORDS[Math.floor(random() * WORDS.length)] ?? "word";
    if (startsSentence) word = word[0]!.toUpperCase() + word.slice(1);
    leftInSentence--;
    if (leftInSentence === 0 || i === count - 1) {
      word += ".";
      leftInSentence = 0;
    } else if (random() < 0.05) {
      word += ",";
    }
    tokens.push(i === 0 ? word : ` ${word}`);
  }
  return tokens;
}

/** `max_tokens` or its newer name `max_completion_tokens`, the smaller if both; malformed values are ignored. */
function maxTokensOf(params: Record<string, unknown>): number | null {
  const limits = [params.max_tokens, params.max_completion_tokens].filter(
    (v): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0,
  );
  return limits.length > 0 ? Math.min(...limits) : null;
}

/** `stop` as a string or an array of strings; empty strings and non-strings are ignored. */
function stopSequencesOf(params: Record<string, unknown>): string[] {
  const stop: unknown = params.stop;
  const candidates: unknown[] = typeof stop === "string" ? [stop] : Array.isArray(stop) ? stop : [];
  return candidates.filter((s): s is string => typeof s === "string" && s.length > 0);
}

/** Where the earliest stop sequence starts in `text`, or null. */
function firstStop(text: string, stops: string[]): number | null {
  let earliest: number | null = null;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (at >= 0 && (earliest === null || at < earliest)) earliest = at;
  }
  return earliest;
}

/** The tokens up to character `at` of their joined text; the last may be a token's beginning. */
function cutAt(tokens: string[], at: number): string[] {
  const kept: string[] = [];
  let offset = 0;
  for (const token of tokens) {
    if (offset + token.length > at) {
      if (at > offset) kept.push(token.slice(0, at - offset));
      break;
    }
    kept.push(token);
    offset += token.length;
  }
  return kept;
}

/** A word, a number, or a single punctuation mark: close to what a BPE tokenizer counts for English. */
const WORDISH = /[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu;

/**
 * An approximation, not a tokenizer: word-ish pieces of every message plus 4
 * per message for the role and the chat-template markers around it.
 */
function usageOf(messages: ChatMessage[], completionTokens: number): TokenUsage {
  let promptTokens = 0;
  for (const message of messages) promptTokens += (textOf(message).match(WORDISH)?.length ?? 0) + 4;
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** A message's text: its string, or its text parts joined (images and null content say nothing). */
function textOf(message: ChatMessage): string {
  if (typeof message.content === "string") return message.content;
  if (message.content === null) return "";
  return message.content.map((p) => (p.type === "text" ? p.text : "")).join("");
}

function throwIfAborted(signal: AbortSignal): void {
  // The same shape as the AbortError node:timers/promises rejects with, whatever reason abort() was given.
  if (signal.aborted) {
    throw Object.assign(new Error("The operation was aborted", { cause: signal.reason }), {
      name: "AbortError",
      code: "ABORT_ERR",
    });
  }
}

const WORDS: readonly string[] = [
  ...new Set(
    `
  the a an this that every some each another our their its my your his her
  and but or so yet because while although when where after before until since
  if then though unless whether as like near under over between through across
  beyond within without toward along behind beside among around during against
  is was are were has had will would can could should might must may seems becomes
  holds keeps brings takes makes gives finds shows leaves turns builds carries follows
  opens closes moves grows changes reaches returns begins remains stands waits listens
  answers explains remembers forgets notices covers shapes guides measures gathers
  river mountain garden window morning evening harbor village city market bridge road
  forest meadow valley island ocean desert field orchard kitchen library station tower
  letter story question answer idea reason method pattern signal message number record
  engine lantern compass ladder basket candle mirror blanket ribbon pebble feather thread
  teacher traveler farmer painter sailor builder neighbor stranger child friend family
  crowd council committee machine system process network channel request response queue
  music silence weather season winter summer autumn spring harvest journey distance
  memory promise moment history future pattern detail surface corner center edge layer
  quiet bright gentle careful steady simple clever patient curious distant hidden open
  narrow wide heavy light early late warm cold green golden silver wooden ancient modern
  small large quick slow calm busy honest strange familiar useful careful certain clear
  soft rough sharp smooth fresh faint loud plain rare common whole broken finished
  slowly quickly gently quietly often rarely always never almost nearly perhaps together
  again already still soon later today tomorrow here there everywhere somewhere inside
  outside above below forward backward carefully clearly simply certainly probably
  water stone light shadow wind fire paper glass iron salt bread tea coffee rain snow
  sun moon star cloud leaf root branch seed flower grass sand wave tide shore hill
  walk talk read write count draw build plan cook wash mend sing dance travel explore
  wonder decide agree learn teach share rest watch carry gather arrange balance
  first second third last next few many several most all both neither either
  clock door table chair street lamp boat train cart wheel key map book page word
  line circle square path trail gate fence wall roof floor room hall yard porch
`.split(/\s+/),
  ),
].filter(Boolean);
