import { O200K_TOKEN_SPLIT_REGEX } from "gpt-tokenizer/encodingParams/constants";
import { countTokens } from "./o200k.ts";

/**
 * Tokens a message takes in a model's prompt: its text in o200k_base (the
 * GPT-4o tokenizer, pure JS in gpt-tokenizer), plus what chat templates spend
 * on the role and the separators around it. Exact for the GPT-4o family;
 * other families' tokenizers differ by a few percent on English (Llama 3) to
 * more on code and other languages, which the reply reserve absorbs.
 */
export const MESSAGE_OVERHEAD_TOKENS = 4;

/**
 * The longest text handed to the encoder at once. gpt-tokenizer's BPE merge
 * (BytePairEncodingCore.bytePairMerge) rescans and splices the whole piece
 * for every merge, so one pre-tokenized piece of n bytes costs O(n²): 100,000
 * of one character took 6.6 s. Bounding what it is given makes counting
 * linear in the text's length. Words, numbers, punctuation and indentation
 * in prose and code are far shorter than this, so they are never cut.
 */
export const MAX_ENCODER_PIECE_CHARS = 128;

/**
 * Special-token text ("<|endoftext|>") in content is counted as the plain
 * text it is, as upstreams encode user content; gpt-tokenizer's default
 * would throw on it.
 */
const AS_PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

export function messageTokens(content: string): number {
  let tokens = MESSAGE_OVERHEAD_TOKENS;
  for (const piece of encoderPieces(content)) {
    tokens += countTokens(piece.text, AS_PLAIN_TEXT);
    if (piece.endsInsideRun) tokens += 1;
  }
  return tokens;
}

export interface EncoderPiece {
  text: string;
  /** Cut inside one over-long pre-token, where the encoder would not have cut. */
  endsInsideRun: boolean;
}

/**
 * The text cut into pieces of at most MAX_ENCODER_PIECE_CHARS, in order, that
 * together are the text. Cuts fall between o200k's own pre-tokens (its split
 * regex), where the encoder cuts anyway: the encoder pre-tokenizes each piece
 * into the same pre-tokens it would have found in the whole text (the regex
 * looks ahead only in `\s+(?!\S)`, which, at a piece's end, takes the same
 * trailing whitespace), so the count is exact. Only a single pre-token longer
 * than the bound (a run of one letter, symbol or whitespace; an unbroken
 * string of letters) is cut inside, never within a surrogate pair. BPE is
 * greedy, not optimal, so such a cut can change the count either way:
 * measured on 600 random and periodic runs, up to 4 tokens more per cut, or
 * 1 fewer (" \t" repeated). messageTokens adds 1 per such cut: a budget may
 * overcount a pathological run, it must not undercount it.
 */
export function* encoderPieces(text: string, maxChars = MAX_ENCODER_PIECE_CHARS): Generator<EncoderPiece> {
  let pieceStart = 0;
  let pieceEnd = 0;
  for (const match of text.matchAll(O200K_TOKEN_SPLIT_REGEX)) {
    const preTokenEnd = match.index + match[0].length;
    if (preTokenEnd - pieceStart <= maxChars) {
      pieceEnd = preTokenEnd;
      continue;
    }
    if (pieceEnd > pieceStart) yield { text: text.slice(pieceStart, pieceEnd), endsInsideRun: false };
    pieceStart = pieceEnd;
    while (preTokenEnd - pieceStart > maxChars) {
      let cut = pieceStart + maxChars;
      if (cut - 1 > pieceStart && isHighSurrogate(text.charCodeAt(cut - 1))) cut -= 1;
      yield { text: text.slice(pieceStart, cut), endsInsideRun: true };
      pieceStart = cut;
    }
    pieceEnd = preTokenEnd;
  }
  // The split regex matches every character, so the pre-tokens cover the text.
  if (text.length > pieceStart) yield { text: text.slice(pieceStart), endsInsideRun: false };
}

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;
