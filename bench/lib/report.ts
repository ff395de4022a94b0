import type { ScenarioResult } from "./context.ts";

export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  postgres: string;
  redis: string;
  os: string;
}

function table(rows: Record<string, number | string>[], first: string): string {
  const columns = [first, ...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k !== first)))];
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [
    line(columns),
    line(columns.map(() => "---")),
    ...rows.map((r) => line(columns.map((c) => String(r[c] ?? "")))),
  ].join("\n");
}

export function renderMarkdown(opts: {
  when: string;
  command: string;
  machine: MachineInfo;
  setup: Record<string, string | number>;
  scenarios: ScenarioResult[];
}): string {
  const out: string[] = [
    "# Parley benchmark results",
    "",
    `Run ${opts.when} with \`${opts.command}\`. Raw numbers: \`bench/results.json\`.`,
    "",
    "Machine: " +
      `${opts.machine.cores} cores (${opts.machine.cpu}), ${opts.machine.memoryGiB} GiB, ${opts.machine.os}; ` +
      `Node ${opts.machine.node}; ${opts.machine.postgres}; Redis ${opts.machine.redis}.`,
    "",
    "Setup: " + Object.entries(opts.setup).map(([k, v]) => `${k} ${v}`).join(", ") + ".",
    "Everything runs on loopback on this one machine, load generator included, so figures are",
    "comparisons within this run (Parley against direct, and against the peer), not absolute capacity.",
    "",
    "## Targets",
    "",
    table(
      opts.scenarios.flatMap((s) =>
        s.targets.map((t) => ({
          target: t.target,
          measured: t.measured,
          met: t.met === null ? "n/a" : t.met ? "yes" : "**no**",
          "missed by": t.by ?? "",
        })),
      ),
      "target",
    ),
  ];
  for (const s of opts.scenarios) {
    out.push("", `## ${s.title}`, "", table(s.cases.map((c) => ({ case: c.case, ...c.figures })), "case"));
    for (const n of s.notes) out.push("", `- ${n}`);
    // Written by run.ts next to RESULTS.md.
    for (const c of s.charts ?? []) out.push("", `![${c.title}](charts/${c.file})`);
  }
  return out.join("\n") + "\n";
}

export function renderProfiles(when: string, command: string, profiles: string[]): string {
  return [
    "# Where Parley's time goes",
    "",
    `CPU profiles of Parley's processes during \`${command}\` (${when}), by self time.`,
    "The profiler slows the processes down: take figures from RESULTS.md, reasons from here.",
    "",
    ...profiles,
    "",
  ].join("\n");
}
