import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { LoadResult, LoadSpec } from "./load-client.ts";

export const root = fileURLToPath(new URL("../..", import.meta.url));

/** Every process the bench has started and that has not exited: killed together if the run is stopped. */
const live = new Set<ChildProcess>();
function track(proc: ChildProcess): ChildProcess {
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  return proc;
}

/** SIGKILLs every process the bench started that is still running (the run itself is being stopped). */
export function killAllChildren(): void {
  for (const proc of live) proc.kill("SIGKILL");
}

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  output(): string;
  stop(): Promise<void>;
}

/** Starts `node <script> …args` and waits until its output contains `ready`. */
export async function startChild(
  name: string,
  args: string[],
  opts: { env?: Record<string, string>; ready: string | RegExp; nodeFlags?: string[]; timeoutMs?: number },
): Promise<Child> {
  const proc = track(
    spawn(process.execPath, [...(opts.nodeFlags ?? []), ...args], {
      cwd: root,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let out = "";
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const matches = () => (typeof opts.ready === "string" ? out.includes(opts.ready) : opts.ready.test(out));
  while (!matches()) {
    if (proc.exitCode !== null) throw new Error(`${name} exited ${proc.exitCode}:\n${out.slice(-2000)}`);
    if (Date.now() > deadline) {
      // Nobody holds this child after the throw: left running, it would load the machine and keep the bench's pipes open.
      proc.kill("SIGKILL");
      throw new Error(`${name} did not start:\n${out.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name,
    proc,
    pid: proc.pid!,
    output: () => out,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await once(proc, "exit");
      clearTimeout(killer);
    },
  };
}

/** Runs one load spec in a separate process and returns its result. */
export async function runLoadProcess(spec: LoadSpec): Promise<LoadResult> {
  const proc = track(
    spawn(process.execPath, ["bench/lib/load-client.ts", JSON.stringify(spec)], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let out = "";
  let err = "";
  proc.stdout?.on("data", (d) => (out += d));
  proc.stderr?.on("data", (d) => (err += d));
  const [code] = (await once(proc, "exit")) as [number | null];
  const line = out.trim().split("\n").at(-1) ?? "";
  if (code !== 0 || !line.startsWith("{")) throw new Error(`load client failed (${code}): ${err.slice(-2000)}`);
  return JSON.parse(line) as LoadResult;
}
