import bpe from "gpt-tokenizer/bpeRanks/o200k_base";
import { countTokens as libraryCount } from "gpt-tokenizer/encoding/o200k_base";
import { describe, expect, it } from "vitest";
import { countTokens, loadO200kRanks } from "../../src/context/o200k.ts";

describe("o200k_base read from gpt-tokenizer's vocabulary file", () => {
  it("is the array gpt-tokenizer's generated module holds, rank by rank", () => {
    const ranks = loadO200kRanks();
    expect(ranks.length).toBe(bpe.length);
    // One comparison per rank, reported by rank: toEqual on 200,000 entries would print the whole array.
    const differing = ranks.flatMap((r, i) => (JSON.stringify(r) === JSON.stringify(bpe[i]) ? [] : [i]));
    expect(differing).toEqual([]);
    // Both kinds are there: tokens whose bytes are not UTF-8 stay bytes.
    expect(ranks.some((r) => Array.isArray(r))).toBe(true);
  });

  it("counts as the library's own encoder does", () => {
    const plain = { disallowedSpecial: new Set<string>() };
    for (const text of ["", "hello world", "Grüße, 你好, привет 👋🏽", "\ufeffBOM", "<|endoftext|> as text", "\u00ff\ud83d", "a\tb\r\n  c"]) {
      expect(countTokens(text, plain)).toBe(libraryCount(text, plain));
    }
  });
});
