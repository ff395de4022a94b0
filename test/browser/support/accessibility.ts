import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Page } from "playwright-core";

/** axe-core's browser build, injected into the page under test (through DevTools, so the console's CSP does not apply). */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** The rules checked: WCAG 2.x A and AA (2.0, 2.1, 2.2). */
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[];
}

/** What axe-core finds against WCAG 2.x A/AA on the page as it is now: one line per rule broken, naming where. */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => "axe" in globalThis))) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(
    (tags) =>
      (globalThis as unknown as { axe: { run(context: unknown, options: unknown): Promise<AxeResult> } }).axe.run(
        (globalThis as unknown as { document: unknown }).document,
        { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] },
      ),
    TAGS,
  );
  return result.violations.map((v) => `${v.id} (${v.impact ?? "?"}): ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}
