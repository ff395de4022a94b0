/**
 * `npm run chaos [-- --only <part of a scenario file name>]`: runs the chaos
 * scenarios (vitest.chaos.config.ts) and prints `scenario | result | seconds`,
 * then checks every process's output for the secret, prints the scenarios'
 * figures, and exits non-zero if anything failed.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CHAOS_SECRET } from "./secret.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const args = process.argv.slice(2);
const onlyAt = args.indexOf("--only");
const only = onlyAt >= 0 ? args[onlyAt + 1] : undefined;
if (onlyAt >= 0 && !only) {
  console.error("usage: npm run chaos -- [--only <part of a scenario file name>]");
  process.exit(2);
}

const logDir = mkdtempSync(join(tmpdir(), "parley-chaos-"));
const report = join(logDir, "vitest.json");
const vitest = spawnSync(
  process.execPath,
  [
    join(root, "node_modules/vitest/vitest.mjs"),
    "run",
    "--config",
    "vitest.chaos.config.ts",
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${report}`,
    ...(only ? [only] : []),
  ],
  { cwd: root, stdio: "inherit", env: { ...process.env, CHAOS_LOG_DIR: logDir } },
);

interface Row {
  scenario: string;
  result: string;
  seconds: string;
}
const rows: Row[] = [];
try {
  const results = JSON.parse(readFileSync(report, "utf8"));
  for (const file of results.testResults ?? []) {
    for (const t of file.assertionResults ?? []) {
      rows.push({ scenario: t.title, result: t.status === "passed" ? "pass" : t.status === "failed" ? "FAIL" : t.status, seconds: ((t.duration ?? 0) / 1000).toFixed(1) });
    }
    // A file that failed before its test ran (an import or setup error) has no assertion results.
    if ((file.assertionResults ?? []).length === 0 && file.status === "failed") {
      rows.push({ scenario: file.name.replace(root, ""), result: "FAIL", seconds: "-" });
    }
  }
} catch {
  rows.push({ scenario: "(vitest wrote no report)", result: "FAIL", seconds: "-" });
}
rows.sort((a, b) => order(a.scenario) - order(b.scenario));

// Every process's output of every scenario, searched for the secret they were all given.
const logs = readdirSync(logDir).filter((f) => f.endsWith(".log"));
const leaking = logs.filter((f) => readFileSync(join(logDir, f), "utf8").includes(CHAOS_SECRET));
rows.push({
  scenario: `logs: no secret in any process's output (${logs.length} logs)`,
  result: logs.length > 0 && leaking.length === 0 ? "pass" : "FAIL",
  seconds: "-",
});

const width = Math.max(...rows.map((r) => r.scenario.length), "scenario".length);
console.log(`\n${"scenario".padEnd(width)} | result | seconds`);
console.log(`${"-".repeat(width)}-|--------|--------`);
for (const r of rows) console.log(`${r.scenario.padEnd(width)} | ${r.result.padEnd(6)} | ${r.seconds.padStart(7)}`);
if (leaking.length > 0) console.log(`\nthe secret appears in: ${leaking.join(", ")} (kept in ${logDir})`);
try {
  const notes = readFileSync(join(logDir, "notes.txt"), "utf8").trim();
  if (notes) console.log(`\nfigures:\n${notes}`);
} catch {}

const failed = rows.filter((r) => r.result !== "pass").length;
console.log(`\n${rows.length - failed} passed, ${failed} failed`);
if (failed === 0 && vitest.status === 0 && !process.env.CHAOS_KEEP_LOGS) rmSync(logDir, { recursive: true, force: true });
else console.log(`process logs: ${logDir}`);
process.exit(failed === 0 && vitest.status === 0 ? 0 : 1);

/** Scenarios in the numbering (titles start with it). */
function order(title: string): number {
  const n = /^(\d+)/.exec(title);
  return n ? Number(n[1]) : 1000;
}
