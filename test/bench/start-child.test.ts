import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startChild } from "../../bench/lib/processes.ts";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("bench: startChild", () => {
  it("kills a child that does not say it is ready in time, instead of leaving it running", async () => {
    const pidFile = join(mkdtempSync(join(tmpdir(), "parley-start-child-")), "pid");
    const script = `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000);`;
    await expect(startChild("silent", ["-e", script], { ready: "never said", timeoutMs: 5_000 })).rejects.toThrow(/did not start/);
    const pid = Number(readFileSync(pidFile, "utf8"));
    await expect.poll(() => alive(pid), { timeout: 5_000 }).toBe(false);
  });
});
