import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { GptEncoding } from "gpt-tokenizer/GptEncoding";

/**
 * o200k_base's vocabulary, rank by rank, as gpt-tokenizer's encoder takes it:
 * the token's text where its bytes are UTF-8 (exactly: a leading BOM is not
 * dropped), else its bytes; a rank the file skips is "".
 *
 * Read from the `.tiktoken` file gpt-tokenizer ships (one `base64 rank` per
 * line), the source its `bpeRanks/o200k_base.js` is generated from, by the
 * same rules (its src/codegen/generateJsBpe.ts). Importing that module instead
 * costs every process ~20 MB more RSS: V8 parses and compiles a 2.4 MB array
 * literal of 200,000 strings (memory the process keeps) and holds its source,
 * 4.3 MB of two-byte text, for the process's life. test/context/o200k.test.ts
 * checks that both give the same array.
 */
export function loadO200kRanks(): (string | number[])[] {
  const file = readFileSync(createRequire(import.meta.url).resolve("gpt-tokenizer/data/o200k_base.tiktoken"));
  const utf8 = new TextDecoder("utf8", { fatal: true });
  const ranks: (string | number[])[] = [];
  let lineStart = 0;
  while (lineStart < file.length) {
    let lineEnd = file.indexOf(0x0a, lineStart);
    if (lineEnd === -1) lineEnd = file.length;
    const space = file.indexOf(0x20, lineStart);
    if (space === -1 || space > lineEnd) throw new Error(`o200k_base.tiktoken: no rank on the line at byte ${lineStart}`);
    const bytes = Buffer.from(file.toString("latin1", lineStart, space), "base64");
    const rank = Number(file.toString("latin1", space + 1, lineEnd));
    if (!Number.isInteger(rank) || rank < ranks.length) throw new Error(`o200k_base.tiktoken: bad rank at byte ${lineStart}`);
    while (ranks.length < rank) ranks.push("");
    ranks.push(asText(utf8, bytes) ?? Array.from(bytes));
    lineStart = lineEnd + 1;
  }
  return ranks;
}

/** The bytes' text when decoding them is lossless both ways (no invalid sequence, no BOM dropped). */
function asText(utf8: InstanceType<typeof TextDecoder>, bytes: Uint8Array): string | undefined {
  try {
    const text = utf8.decode(bytes);
    return Buffer.byteLength(text, "utf8") === bytes.length ? text : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The o200k_base encoder gpt-tokenizer's `encoding/o200k_base` module builds
 * (the same call), from the vocabulary file. Built when this module loads:
 * both roles count tokens (the API a turn's new messages, the worker a
 * reply's and the history budget).
 */
const o200k = GptEncoding.getEncodingApi("o200k_base", loadO200kRanks);

/** gpt-tokenizer's `countTokens` for o200k_base. */
export const countTokens: GptEncoding["countTokens"] = o200k.countTokens;
