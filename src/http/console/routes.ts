import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import type { AppEnv } from "../env.ts";

/**
 * The browser console (`GET /`): a client of the public API like any other, served as files. Its own
 * code is plain ES modules under src/console/ (copied to dist/console/ by the build) and its libraries
 * (preact, htm, eventsource-parser) are served as their packages ship them, through the page's import
 * map: nothing is bundled, so there is no build step for the browser side.
 */
const CONSOLE_DIR = new URL("../../console/", import.meta.url);

/** The console's own files are served by name from a table made at start, so no request names a path on disk. */
const OWN_FILE = /^[a-z-]+\.(js|css)$/;

const VENDOR_MODULES: Record<string, string> = {
  "preact.mjs": "preact",
  "preact-hooks.mjs": "preact/hooks",
  "htm.mjs": "htm",
  "htm-preact.mjs": "htm/preact",
  "eventsource-parser.js": "eventsource-parser",
};

interface Asset {
  body: string;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  html: "text/html; charset=utf-8",
};

function asset(body: string, name: string): Asset {
  const ext = name.slice(name.lastIndexOf(".") + 1);
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
  return { body, type: TYPES[ext] ?? "application/octet-stream", etag };
}

function loadAssets(): { index: Asset; files: Map<string, Asset>; importMapHash: string } {
  const files = new Map<string, Asset>();
  for (const name of readdirSync(CONSOLE_DIR).filter((n) => OWN_FILE.test(n))) files.set(name, asset(readFileSync(new URL(name, CONSOLE_DIR), "utf8"), name));
  for (const [name, specifier] of Object.entries(VENDOR_MODULES)) {
    // The packages' source-map comments name files that are not served.
    const body = readFileSync(fileURLToPath(import.meta.resolve(specifier)), "utf8").replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
    files.set(`vendor/${name}`, asset(body, name));
  }
  const html = readFileSync(new URL("index.html", CONSOLE_DIR), "utf8");
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1];
  if (importMap === undefined) throw new Error("src/console/index.html has no import map");
  const importMapHash = createHash("sha256").update(importMap).digest("base64");
  return { index: asset(html, "index.html"), files, importMapHash };
}

export function consoleRoutes() {
  const { index, files, importMapHash } = loadAssets();
  // The page runs only its own scripts and talks only to this origin; the inline import map is allowed by its hash.
  // Images of a conversation may be anywhere (https, data URLs), as the API stores them.
  const policy = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${importMapHash}'`,
    "style-src 'self'",
    "img-src 'self' data: blob: https: http:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");

  const send = (a: Asset, ifNoneMatch: string | undefined) => {
    const headers: Record<string, string> = {
      "content-type": a.type,
      etag: a.etag,
      // Revalidated each time (a 304 when unchanged): a deploy's new files are used at the next load.
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    };
    if (ifNoneMatch === a.etag) return new Response(null, { status: 304, headers });
    return new Response(a.body, { status: 200, headers });
  };

  return new Hono<AppEnv>()
    .get("/", (c) => {
      const res = send(index, c.req.header("if-none-match"));
      res.headers.set("content-security-policy", policy);
      res.headers.set("referrer-policy", "no-referrer");
      return res;
    })
    .get("/console/*", (c) => {
      const found = files.get(c.req.path.slice("/console/".length));
      return found ? send(found, c.req.header("if-none-match")) : c.notFound();
    });
}
