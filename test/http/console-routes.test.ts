import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { useTestService } from "../support/service.ts";

// What the browser is served at / and /console/…; the console itself is driven in Chromium by test/browser/.
const ctx = useTestService();
const consoleDir = new URL("../../src/console/", import.meta.url);
const get = (path: string, headers: Record<string, string> = {}) => fetch(`${ctx.service.url}${path}`, { headers });

/** Every module the page can load: the import map's entries, and the relative imports of the console's own files. */
function pageModules(html: string): string[] {
  const map = JSON.parse(/<script type="importmap">([\s\S]*?)<\/script>/.exec(html)![1]!) as { imports: Record<string, string> };
  const own = readdirSync(consoleDir)
    .filter((n) => n.endsWith(".js"))
    .flatMap((n) => [...readFileSync(new URL(n, consoleDir), "utf8").matchAll(/from "\.\/([^"]+)"/g)].map((m) => `/console/${m[1]}`));
  return [...new Set([...Object.values(map.imports), ...own, "/console/app.js"])];
}

describe("GET / (the browser console)", () => {
  it("serves the page with no key, under a policy that runs only its own scripts and talks only to this origin", async () => {
    const res = await get("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await res.text();
    expect(html).toContain("<title>Parley console</title>");
    const policy = res.headers.get("content-security-policy")!;
    expect(policy).toContain("default-src 'none'");
    expect(policy).toContain("connect-src 'self'");
    // The inline import map is the only inline script, allowed by its hash.
    const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)![1]!;
    expect(policy).toContain(`script-src 'self' 'sha256-${createHash("sha256").update(importMap).digest("base64")}'`);
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
  });

  it("serves every module the page imports, and its style sheet, as JavaScript and CSS", async () => {
    const modules = pageModules(await (await get("/")).text());
    expect(modules).toEqual(expect.arrayContaining(["/console/vendor/preact.mjs", "/console/conversation-view.js"]));
    for (const path of modules) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toBe("text/javascript; charset=utf-8");
      expect(await res.text(), path).not.toMatch(/sourceMappingURL/);
    }
    const css = await get("/console/style.css");
    expect(css.status).toBe(200);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
  });

  it("answers 304 to a copy the browser has, so each load revalidates cheaply", async () => {
    const first = await get("/console/app.js");
    const etag = first.headers.get("etag")!;
    expect(first.headers.get("cache-control")).toBe("no-cache");
    const again = await get("/console/app.js", { "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
  });

  it("has no file but its own: other paths under /console are the API's 404", async () => {
    for (const path of ["/console/nope.js", "/console/../package.json", "/console/%2e%2e/package.json", "/console/tsconfig.json", "/console/index.html"]) {
      const res = await get(path);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe("route_not_found");
    }
  });

  it("calls nothing but the public API: every request the console makes goes through api.js to /v1", () => {
    for (const name of readdirSync(consoleDir).filter((n) => n.endsWith(".js") && n !== "api.js")) {
      const source = readFileSync(new URL(name, consoleDir), "utf8");
      expect(source, name).not.toMatch(/\bfetch\(|XMLHttpRequest|EventSource|WebSocket/);
    }
    expect(readFileSync(new URL("api.js", consoleDir), "utf8")).toContain("new URL(`/v1${path}`, location.origin)");
  });
});

describe("the build (npm run build, which the image and npm start run)", () => {
  it("ships the console's files in dist/ as they are, without its tsconfig", () => {
    // test/support/global-setup.ts built dist/ before the tests.
    const distDir = new URL("../../dist/console/", import.meta.url);
    const shipped = readdirSync(distDir).sort();
    expect(shipped).toEqual(readdirSync(consoleDir).filter((n) => n !== "tsconfig.json").sort());
    for (const name of shipped) expect(readFileSync(new URL(name, distDir), "utf8"), name).toBe(readFileSync(new URL(name, consoleDir), "utf8"));
  });
});

describe("the console turned off (CONSOLE_ENABLED=false)", () => {
  const off = useTestService({ CONSOLE_ENABLED: false });

  it("is no route", async () => {
    for (const path of ["/", "/console/app.js"]) {
      const res = await fetch(`${off.service.url}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("route_not_found");
    }
  });
});
