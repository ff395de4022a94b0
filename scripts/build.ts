/**
 * `npm run build`: compiles src/ to dist/ with tsc (tsconfig.build.json).
 *
 * tsc truncates and rewrites every output in place, and several test runs
 * and benches share one checkout: a process starting while another run
 * rebuilds could load half a file. So tsc writes to a directory of its own
 * and each output that differs is renamed into dist/, which replaces a file
 * whole; an unchanged tree rewrites nothing. Outputs of deleted sources are
 * removed, so dist/ is always exactly what src/ compiles to.
 *
 * The browser console's files (src/console/: plain ES modules, HTML, CSS, which tsc does not read) are
 * copied as they are: the browser runs them unbuilt.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = fileURLToPath(new URL("..", import.meta.url));
export const distDir = join(root, "dist");

export async function buildDist(): Promise<{ files: number; replaced: number }> {
  // Beside dist/, not in it: a source map names its source relative to its own directory (../src/…).
  const staging = await mkdtemp(join(root, ".dist-staging-"));
  try {
    await compile(staging);
    await cp(join(root, "src/console"), join(staging, "console"), {
      recursive: true,
      filter: (source) => !source.endsWith("tsconfig.json"),
    });
    const built = await filesUnder(staging);
    let replaced = 0;
    for (const file of built) {
      const target = join(distDir, file);
      if (await sameBytes(join(staging, file), target)) continue;
      await mkdir(dirname(target), { recursive: true });
      await rename(join(staging, file), target);
      replaced++;
    }
    const wanted = new Set(built);
    for (const file of await filesUnder(distDir)) if (!wanted.has(file)) await rm(join(distDir, file), { force: true });
    return { files: built.length, replaced };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function compile(outDir: string): Promise<void> {
  const tsc = join(root, "node_modules/typescript/bin/tsc");
  try {
    await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.build.json", "--outDir", outDir], { cwd: root });
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`tsc -p tsconfig.build.json failed:\n${stdout ?? ""}${stderr ?? ""}`.trimEnd(), { cause: err });
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([readFile(a), readFile(b).catch(() => null)]);
  return y !== null && x.equals(y);
}

// Not import.meta.main: Node 22 lacks it, and the build would silently do nothing there.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // stderr: `npm run -s keys -- create | tail -n 1` builds first and reads the key from stdout.
  await buildDist().then(
    ({ files, replaced }) => console.error(`built dist/: ${files} files, ${replaced} replaced`),
    (err: Error) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
}
