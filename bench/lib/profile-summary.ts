import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The functions with the most self time in a V8 .cpuprofile, as shares of the time not idle, as a Markdown list. */
export function summarizeProfile(path: string, top = 12): string[] {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMicros = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const node = byNode.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node || node.callFrame.functionName === "(idle)") return;
    busy += dt;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? url.replace(/^.*?\/(node_modules\/|src\/)/, "$1") : "";
    const key = `${functionName || "(anonymous)"} ${where ? `${where}:${lineNumber + 1}` : ""}`.trim();
    selfMicros.set(key, (selfMicros.get(key) ?? 0) + dt);
  });
  return [...selfMicros.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, us]) => `  - ${((us / busy) * 100).toFixed(1)}% ${k}`);
}
