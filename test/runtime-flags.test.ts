import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { PARLEY_NODE_FLAGS } from "../src/runtime-flags.ts";

// Enough old-generation churn for several full GCs: a window of live objects that keeps being replaced.
const CHURN = `const keep = [];
for (let i = 0; i < 2e6; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 200000) keep.splice(0, 50000); }`;

/** The growing factors V8 chose after each full GC in a process started with `flags` (--trace-gc-verbose prints them). */
async function growingFactors(flags: string[]): Promise<number[]> {
  const { stdout } = await promisify(execFile)(process.execPath, [...flags, "--trace-gc-verbose", "-e", CHURN], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return [...stdout.matchAll(/\[HeapController\] factor ([\d.]+)/g)].map((m) => Number(m[1]));
}

describe("Parley's Node flags", () => {
  it("hold the old generation to 1.3× what survived the last full GC, where V8 alone lets it grow up to 4×", async () => {
    const ours = await growingFactors(PARLEY_NODE_FLAGS);
    expect(ours.length).toBeGreaterThan(0);
    expect(new Set(ours)).toEqual(new Set([1.3]));
    // The check means something: without the flag this machine's V8 picks larger factors.
    const alone = await growingFactors(PARLEY_NODE_FLAGS.filter((f) => !f.startsWith("--heap-growing-percent")));
    expect(Math.max(...alone)).toBeGreaterThan(1.3);
  });
});

describe("package.json's start and dev scripts", () => {
  it("run with every flag of PARLEY_NODE_FLAGS (npm start is how the image and operators start Parley)", async () => {
    const { readFile } = await import("node:fs/promises");
    const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as { scripts: Record<string, string> };
    for (const script of ["start", "dev"]) {
      const words = pkg.scripts[script]!.split(/\s+/);
      for (const flag of PARLEY_NODE_FLAGS) expect(words, `${script}: ${pkg.scripts[script]}`).toContain(flag);
    }
  });
});
