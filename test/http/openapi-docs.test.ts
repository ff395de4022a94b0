import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { apiReferenceRoutes } from "../../src/http/docs/api-reference.ts";
import { useTestService } from "../support/service.ts";

const root = join(import.meta.dirname, "../..");
const METHODS = ["get", "post", "put", "patch", "delete"] as const;

interface Operation {
  operationId?: string;
  requestBody?: { content: Record<string, { example?: unknown }> };
  responses: Record<string, { content?: Record<string, { example?: unknown }> }>;
}
type Document = { paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>> };

const operationsOf = (doc: Document) =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((m) => ({ method: m.toUpperCase(), path, op: item[m]! })),
  );

/** `redocly lint` on a file, on this Node, with nothing sent anywhere (no telemetry, no update check). */
async function redoclyLint(file: string) {
  const cli = join(root, "node_modules/@redocly/cli/bin/cli.js");
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? tmpdir(),
    REDOCLY_TELEMETRY: "off",
    REDOCLY_SUPPRESS_UPDATE_NOTICE: "true",
    // Belt and braces: should anything still try the network, Node's fetch goes to a proxy that is not there.
    NODE_USE_ENV_PROXY: "1",
    HTTP_PROXY: "http://127.0.0.1:9",
    HTTPS_PROXY: "http://127.0.0.1:9",
  };
  const run = await promisify(execFile)(
    process.execPath,
    [cli, "lint", "--config", join(root, "redocly.yaml"), "--format=json", file],
    { cwd: root, env, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
  ).catch((err: { stdout?: string; stderr?: string; code?: number }) => err);
  const report = JSON.parse(run.stdout ?? "") as {
    totals: { errors: number; warnings: number };
    problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
  };
  return report;
}

/** One service for the document, the docs page and docs/API.md. */
const ctx = useTestService();

describe("the OpenAPI document", () => {
  let doc: Document;
  beforeAll(async () => {
    const res = await fetch(`${ctx.service.url}/openapi.json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as Document;
  });

  it("passes redocly's recommended lint with no error and no warning", { timeout: 180_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "parley-openapi-"));
    try {
      const file = join(dir, "openapi.json");
      await writeFile(file, JSON.stringify(doc));
      const report = await redoclyLint(file);
      const problems = report.problems.map((p) => `${p.severity} ${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
      expect(problems).toEqual([]);
      expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reports a wrong example: the lint checks examples against their schemas", { timeout: 180_000 }, async () => {
    // Guards the test above: were examples not checked, a drifted one would pass unseen.
    const dir = await mkdtemp(join(tmpdir(), "parley-openapi-"));
    try {
      const broken = structuredClone(doc);
      broken.paths["/v1/models"]!.get!.responses["200"]!.content!["application/json"]!.example = { object: "list", data: "none" };
      const file = join(dir, "openapi.json");
      await writeFile(file, JSON.stringify(broken));
      const report = await redoclyLint(file);
      expect(report.problems.map((p) => p.ruleId)).toContain("no-invalid-media-type-examples");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("gives every operation an operationId, each one different", () => {
    const ops = operationsOf(doc);
    expect(ops.length).toBeGreaterThanOrEqual(28);
    expect(ops.filter((o) => !o.op.operationId).map((o) => `${o.method} ${o.path}`)).toEqual([]);
    const ids = ops.map((o) => o.op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(["createConversation", "createMessage", "createChatCompletion", "createResponse", "listModels"]));
  });

  it("gives every operation an example of its request body and of each JSON or SSE success answer", () => {
    const missing: string[] = [];
    for (const { method, path, op } of operationsOf(doc)) {
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
        if (media.example === undefined) missing.push(`${method} ${path} request ${type}`);
      }
      for (const [status, response] of Object.entries(op.responses)) {
        if (!status.startsWith("2")) continue;
        for (const [type, media] of Object.entries(response.content ?? {})) {
          if (media.example === undefined) missing.push(`${method} ${path} ${status} ${type}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

/** `METHOD /path` in backticks, as docs/API.md names endpoints. */
const NAMED = /`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s]*)`/g;
/** Routes Parley serves outside the OpenAPI document (no key, not part of the API proper). */
const OUTSIDE_DOCUMENT = ["GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json", "GET /docs", "GET /"];

describe("docs/API.md", () => {
  it("names every operation of /openapi.json, and only routes that exist", async () => {
    const doc = (await (await fetch(`${ctx.service.url}/openapi.json`)).json()) as Document;
    const inDocument = new Set(operationsOf(doc).map((o) => `${o.method} ${o.path}`));
    const text = await readFile(join(root, "docs/API.md"), "utf8");
    const named = new Set([...text.matchAll(NAMED)].map((m) => `${m[1]} ${m[2]}`));
    expect([...inDocument].filter((op) => !named.has(op))).toEqual([]);
    const unknown = [...named].filter((op) => !inDocument.has(op) && !OUTSIDE_DOCUMENT.includes(op));
    expect(unknown).toEqual([]);
    // Those outside the document are really served (whatever their answer, not "no route").
    for (const op of OUTSIDE_DOCUMENT.filter((o) => named.has(o))) {
      const res = await fetch(`${ctx.service.url}${op.split(" ")[1]}`);
      const body = await res.text();
      expect({ op, routed: !body.includes("route_not_found") }).toEqual({ op, routed: true });
    }
  });

  it("links only to files that are in the repository", async () => {
    const docs = ["README.md", "docs/API.md", "docs/GUIDE.md", "docs/CONFIGURATION.md", "docs/OPERATIONS.md", "docs/DEVELOPMENT.md"];
    for (const file of docs) {
      const text = await readFile(join(root, file), "utf8");
      const links = [...text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
      for (const link of links) {
        const target = join(root, file, "..", link);
        expect({ file, link, inRepository: target.startsWith(root + "/") }).toEqual({ file, link, inRepository: true });
        await expect(readFile(target).then(() => true, (e: NodeJS.ErrnoException) => (e.code === "EISDIR" ? true : e.code))).resolves.toBe(true);
      }
    }
  });
});

describe("GET /docs", () => {
  it("serves the API reference page, pointed at /openapi.json, needing no key", async () => {
    const res = await fetch(`${ctx.service.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain("<title>Parley API reference</title>");
    expect(html).toMatch(/"url": "\/openapi\.json"/);
    // Nothing of Scalar's services is asked for by the page beyond its script.
    expect(html).toMatch(/"telemetry": false/);
    expect(html).toMatch(/"withDefaultFonts": false/);
    expect(html).toMatch(/"disabled": true/);
    expect(html).toMatch(/"showDeveloperTools": "never"/);
    // ...and the document it points at is served without a key too.
    expect((await fetch(`${ctx.service.url}/openapi.json`)).status).toBe(200);
  });
});

describe("GET /docs turned off (DOCS_ENABLED=false)", () => {
  const off = useTestService({ DOCS_ENABLED: false });

  it("is no route, while /openapi.json is still served", async () => {
    const res = await fetch(`${off.service.url}/docs`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("route_not_found");
    expect((await fetch(`${off.service.url}/openapi.json`)).status).toBe(200);
  });
});

describe("the docs page's script (DOCS_SCRIPT_URL)", () => {
  const page = async (scriptUrl?: string) =>
    (await new Hono().route("/", apiReferenceRoutes({ documentUrl: "/openapi.json", scriptUrl })).request("/docs")).text();

  it("loads the bundle from the URL given, for a copy hosted where browsers can reach it", async () => {
    const html = await page("https://static.example.com/scalar/standalone.js");
    expect(html).toContain('<script src="https://static.example.com/scalar/standalone.js"></script>');
  });

  it("loads Scalar's own bundle when none is given", async () => {
    const html = await page();
    expect(html).toMatch(/import \{ createApiReference \} from 'https:\/\/[^']+@?scalar\/api-reference[^']*'/);
    expect(html).not.toContain("static.example.com");
  });
});

