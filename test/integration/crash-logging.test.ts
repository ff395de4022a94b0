import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { useParleyProcesses, waitForOutput } from "../support/processes.ts";

const SECRET = "sk-crash-secret-7f3a9c1d5e";
const crashOnSignal = fileURLToPath(new URL("../support/crash-on-signal.ts", import.meta.url));
const processes = useParleyProcesses();

/** The process's JSON log lines; whatever else it printed is kept as text. */
const logLines = (output: string) =>
  output
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        return { unparsed: line };
      }
    });

describe("a crash", () => {
  it.each([
    ["an uncaught exception", "exception", "uncaughtException", "Error"],
    ["an unhandled rejection", "rejection", "unhandledRejection", "Error"],
    ["a thrown string", "thrown-string", "uncaughtException", "string"],
  ])("from %s is logged by type, without its text, and the process exits 1", async (_, crashWith, origin, type) => {
    const { env } = await processes.environment();
    const p = processes.start({ ...env, NODE_OPTIONS: `--import=${crashOnSignal}`, CRASH_WITH: crashWith, CRASH_SECRET: SECRET });
    await waitForOutput(p, "api listening");
    p.child.kill("SIGUSR2");
    expect(await p.exited).toBe(1);

    expect(p.output()).not.toContain(SECRET);
    const crashed = logLines(p.output()).filter((line) => line.msg === "crashed");
    expect(crashed).toHaveLength(1);
    expect(crashed[0]).toMatchObject({ level: 60, origin, err: { type } });
    expect(logLines(p.output()).filter((line) => "unparsed" in line)).toEqual([]);
  });
});
