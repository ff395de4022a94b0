import { execFileSync } from "node:child_process";

/**
 * Whether a command-line tool a deploy check needs is installed. In CI (CI set) a missing tool fails the
 * check that needs it, saying how to install it; elsewhere that check is skipped with the same words.
 */
export function requiredTool(command: string, versionArgs: string[], install: string): { present: boolean; skip: boolean } {
  let present = true;
  try {
    execFileSync(command, versionArgs, { stdio: "ignore" });
  } catch {
    present = false;
  }
  const skip = !present && !process.env.CI;
  if (skip) console.warn(`skipped: ${command} is not installed (${install}); CI fails instead`);
  return { present, skip };
}

export function assertTool(tool: { present: boolean }, command: string, install: string): void {
  if (!tool.present) throw new Error(`${command} is not installed: ${install}`);
}
