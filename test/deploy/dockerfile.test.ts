import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Copy, DockerfileParser, type Instruction } from "dockerfile-ast";
import { describe, expect, it } from "vitest";
import { configSchema } from "../../src/config.ts";
import { PARLEY_NODE_FLAGS } from "../../src/runtime-flags.ts";

/**
 * The Dockerfile, parsed (dockerfile-ast) for the facts the image promises, since neither a Docker engine
 * nor hadolint can run here: this checks what the file says, not a built image.
 */

const root = fileURLToPath(new URL("../..", import.meta.url));
const dockerfile = DockerfileParser.parse(readFileSync(`${root}/Dockerfile`, "utf8"));
const froms = dockerfile.getFROMs();
const finalStageStart = froms.at(-1)!.getRange().start.line;
const inFinalStage = dockerfile.getInstructions().filter((i) => i.getRange().start.line >= finalStageStart);
const final = (keyword: string): Instruction[] => inFinalStage.filter((i) => i.getKeyword() === keyword);
const copies = (instructions: Instruction[]): Copy[] => instructions.filter((i): i is Copy => i instanceof Copy);
const jsonArgs = (i: Instruction | undefined): unknown => JSON.parse(i?.getArgumentsContent() ?? "null");

describe("the image (Dockerfile)", () => {
  it("builds dist/ in a build stage and ships it to a second, final stage", () => {
    expect(froms).toHaveLength(2);
    expect(froms[0]!.getBuildStage()).toBe("build");
    const build = dockerfile.getInstructions().filter((i) => i.getRange().start.line < finalStageStart);
    expect(build.some((i) => i.getKeyword() === "RUN" && i.getArgumentsContent() === "npm run build")).toBe(true);
    const finalCopies = copies(inFinalStage).map((c) => [c.getFlags().map((f) => f.toString()).join(" "), c.getArgumentsContent()]);
    expect(finalCopies).toContainEqual(["--from=build", "/app/dist ./dist"]);
  });

  it("installs production dependencies only in the final stage", () => {
    const installs = final("RUN").filter((r) => /\bnpm (ci|install|i)\b/.test(r.getArgumentsContent() ?? ""));
    expect(installs.length).toBeGreaterThan(0);
    for (const r of installs) expect(r.getArgumentsContent()).toMatch(/--omit=dev\b/);
    // Nothing copied from the build stage but dist/ (its node_modules has the dev dependencies).
    for (const c of copies(inFinalStage).filter((c) => c.getFlags().length > 0)) expect(c.getArgumentsContent()).toBe("/app/dist ./dist");
  });

  it("runs as a user that is not root", () => {
    const user = final("USER").at(-1)?.getArgumentsContent();
    expect(user).toBeDefined();
    expect(["root", "0", "0:0", "root:root"]).not.toContain(user);
  });

  it("has tini, installed in the image, as PID 1", () => {
    expect(jsonArgs(final("ENTRYPOINT").at(-1))).toEqual(["/usr/bin/tini", "--"]);
    expect(final("RUN").some((r) => /apt-get install[^&]*\btini\b/.test(r.getArgumentsContent() ?? ""))).toBe(true);
  });

  it("runs node itself (not npm) on dist/main.js with Parley's node flags, as npm start does", () => {
    const cmd = ["node", ...PARLEY_NODE_FLAGS, "dist/main.js"];
    expect(jsonArgs(final("CMD").at(-1))).toEqual(cmd);
    const pkg = JSON.parse(readFileSync(`${root}/package.json`, "utf8"));
    expect(pkg.scripts.start).toBe(cmd.join(" "));
  });

  it("checks its health with the healthcheck script, and exposes the ports it asks", () => {
    const healthcheck = final("HEALTHCHECK").at(-1)!;
    expect(healthcheck.getArgumentsContent()).toBe('CMD ["node", "dist/cli/healthcheck.js"]');
    expect(existsSync(`${root}/src/cli/healthcheck.ts`)).toBe(true);
    const env = Object.fromEntries(final("ENV").map((e) => e.getArgumentsContent()!.split("=", 2)));
    const exposed = final("EXPOSE").flatMap((e) => e.getArgumentsContent()!.split(/\s+/));
    const apiPort = String(configSchema.shape.PORT.parse(undefined));
    expect(exposed.sort()).toEqual([apiPort, env.WORKER_HEALTH_PORT].sort());
    expect(Number(env.WORKER_HEALTH_PORT)).toBeGreaterThan(0);
  });

  it("sends the builder only the files it copies (.dockerignore allows, never .env)", () => {
    const lines = readFileSync(`${root}/.dockerignore`, "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    expect(lines[0]).toBe("*");
    const allowed = new Set(lines.slice(1).map((l) => l.replace(/^!/, "").replace(/\/$/, "")));
    expect(allowed.has(".env")).toBe(false);
    const fromContext = copies(dockerfile.getInstructions())
      .filter((c) => c.getFlags().length === 0)
      .flatMap((c) => c.getArgumentsContent()!.split(/\s+/).slice(0, -1));
    for (const source of fromContext) expect(allowed.has(source.replace(/\/$/, "")), source).toBe(true);
  });
});
