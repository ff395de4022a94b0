import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { encoderPieces, MAX_ENCODER_PIECE_CHARS, MESSAGE_OVERHEAD_TOKENS, messageTokens } from "../../src/context/tokens.ts";

// Every text the encoder is given is recorded; one far past the bound is not
// encoded at all (answered 0), so code that hands over a whole message fails
// this file at once instead of stalling it for minutes.
const encoded = vi.hoisted(() => ({ longest: 0 }));
vi.mock("../../src/context/o200k.ts", async (original) => {
  const real = await original<typeof import("../../src/context/o200k.ts")>();
  return {
    ...real,
    countTokens: (text: string, options?: Parameters<typeof real.countTokens>[1]) => {
      encoded.longest = Math.max(encoded.longest, text.length);
      return text.length > 10_000 ? 0 : real.countTokens(text, options);
    },
  };
});

// The test's own reference counts use the encoder as it is.
const { countTokens } = await vi.importActual<typeof import("gpt-tokenizer/encoding/o200k_base")>("gpt-tokenizer/encoding/o200k_base");
const root = fileURLToPath(new URL("../..", import.meta.url));
const PLAIN = { disallowedSpecial: new Set<string>() };
/** What the encoder makes of the whole text in one call: the count before pieces. */
const unsplitTokens = (text: string) => countTokens(text, PLAIN) + MESSAGE_OVERHEAD_TOKENS;

const MILLION = 1_000_000;
const letters = (n: number) => Array.from({ length: n }, (_, i) => "abcdefghijklmnopqrstuvwxyz"[(i * 7919 + (i >> 3)) % 26]).join("");

const realistic: Record<string, string> = {
  "the README": readFileSync(join(root, "README.md"), "utf8"),
  "a TypeScript file": readFileSync(join(root, "src/logger.ts"), "utf8"),
  "a German paragraph":
    "Die Donaudampfschifffahrtsgesellschaftskapitänsmütze lag auf dem Tisch. Das Rindfleischetikettierungs" +
    "überwachungsaufgabenübertragungsgesetz ist ein bekanntes Beispiel für die Länge deutscher Komposita, über " +
    "die sich Übersetzer häufig ärgern. Größere Straßenbahnhaltestellen bieten Überdachungen.",
  "Japanese prose": "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。",
  JSON: JSON.stringify(
    {
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hello, world! ".repeat(20) }],
      params: { temperature: 0.2, max_tokens: 512, stop: ["\n\n"] },
      metadata: { trace: "x".repeat(40), url: "https://example.com/path/to/resource?query=1&b=2#frag" },
    },
    null,
    2,
  ),
  "code with deep indentation and rules":
    "function f(x: number): number {\n" +
    "    if (x > 0) {\n        return x * 2; // double\n    }\n".repeat(30) +
    " ".repeat(100) + "// aligned\n" + "-".repeat(120) + "\n" + "=".repeat(80) + "\n",
};

describe("message tokens", () => {
  it.each(Object.entries(realistic))("counts %s exactly as the encoder does unsplit", (_, text) => {
    expect(messageTokens(text)).toBe(unsplitTokens(text));
  });

  it("counts special-token text in content as plain text instead of throwing", () => {
    const text = "say <|endoftext|> and <|im_start|>";
    expect(messageTokens(text)).toBe(unsplitTokens(text));
    expect(messageTokens(text)).toBeGreaterThan(MESSAGE_OVERHEAD_TOKENS + 2);
  });

  it("never hands the encoder more than a bounded piece of a million-character run", () => {
    for (const text of ["a".repeat(MILLION), "ab".repeat(MILLION / 2), " ".repeat(MILLION), letters(MILLION)]) {
      encoded.longest = 0;
      const tokens = messageTokens(text);
      expect(encoded.longest).toBeGreaterThan(0);
      expect(encoded.longest).toBeLessThanOrEqual(MAX_ENCODER_PIECE_CHARS);
      expect(tokens).toBeGreaterThan(MESSAGE_OVERHEAD_TOKENS);
    }
  });

  it("overcounts a run cut into pieces slightly if at all, and does not undercount it", () => {
    const runs = ["a".repeat(6_000), "abc".repeat(2_000), "!".repeat(6_000), letters(6_000), "漢字日本語".repeat(1_000), "😀".repeat(1_000), " \t".repeat(3_000), "!?.".repeat(2_000)];
    for (const run of runs) {
      const whole = unsplitTokens(run);
      const cuts = Math.ceil(run.length / MAX_ENCODER_PIECE_CHARS);
      expect(messageTokens(run)).toBeGreaterThanOrEqual(whole);
      expect(messageTokens(run)).toBeLessThanOrEqual(whole + 5 * cuts);
    }
  });
});

describe("encoder pieces", () => {
  const texts = {
    ...realistic,
    "a run of one character": "a".repeat(MILLION),
    "a repeated two-character pattern": "ab".repeat(MILLION / 2),
    "a run of spaces": " ".repeat(MILLION),
    "a run of newlines": "\n".repeat(MILLION),
    "letters with no break": letters(MILLION),
    "emoji (surrogate pairs) at an odd offset": "x" + "😀".repeat(MILLION / 2),
    "a long word after prose": "A short start. " + "b".repeat(1_000) + " and an end.",
    "the empty text": "",
  };

  it.each(Object.entries(texts))("cut %s into bounded pieces that together are the text", (_, text) => {
    const pieces = [...encoderPieces(text)].map((piece) => piece.text);
    expect(pieces.join("")).toBe(text);
    for (const piece of pieces) {
      expect(piece.length).toBeGreaterThan(0);
      expect(piece.length).toBeLessThanOrEqual(MAX_ENCODER_PIECE_CHARS);
      // Never between the halves of a surrogate pair.
      expect(piece.charCodeAt(0) >= 0xdc00 && piece.charCodeAt(0) <= 0xdfff).toBe(false);
    }
  });

  it("marks the cuts made inside an over-long run, and only those", () => {
    const pieces = [...encoderPieces("A short start. " + "b".repeat(1_000) + " and an end.")];
    expect(pieces.map((piece) => piece.endsInsideRun)).toEqual([false, true, true, true, true, true, true, true, false]);
  });

  it("cuts prose only between the encoder's own pre-tokens", () => {
    const pieces = [...encoderPieces(realistic["the README"]!)];
    expect(pieces.filter((piece) => piece.endsInsideRun)).toEqual([]);
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.reduce((sum, piece) => sum + countTokens(piece.text, PLAIN), 0)).toBe(countTokens(realistic["the README"]!, PLAIN));
  });
});

describe("the tokenizer", () => {
  it("is used only through messageTokens, so no path encodes an unbounded text", () => {
    const sources = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
    const importersOf = (text: string) =>
      sources(join(root, "src"))
        .filter((file) => readFileSync(file, "utf8").includes(text))
        .map((file) => relative(root, file));
    // The encoder is built in o200k.ts (tokens.ts takes the split regex from gpt-tokenizer), and only tokens.ts uses it.
    expect(importersOf("gpt-tokenizer")).toEqual(["src/context/o200k.ts", "src/context/tokens.ts"]);
    expect(importersOf("o200k.ts")).toEqual(["src/context/tokens.ts"]);
  });
});
