import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { corsFor, EXPOSED_HEADERS } from "../../src/http/cors.ts";
import { useTestService } from "../support/service.ts";

const APP = "https://app.example.com";

/** A preflight as a browser sends it: no Authorization, the method and headers it means to use. */
const preflight = (url: string, origin: string) =>
  fetch(url, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type,x-stainless-os" },
  });

const corsHeaders = (headers: Headers) => [...headers.keys()].filter((k) => k.startsWith("access-control-"));

describe("CORS with origins listed (CORS_ORIGINS)", () => {
  const ctx = useTestService({ CORS_ORIGINS: [APP, "http://localhost:5173"] });

  it("answers a preflight before authentication: 204 with methods, the requested headers and a max age", async () => {
    const res = await preflight(`${ctx.service.url}/v1/conversations`, APP);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(APP);
    expect(res.headers.get("access-control-allow-methods")).toBe("GET,POST,PATCH,DELETE");
    expect(res.headers.get("access-control-allow-headers")).toBe("authorization,content-type,x-stainless-os");
    expect(res.headers.get("access-control-max-age")).toBe("7200");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(res.headers.get("vary")).toMatch(/Origin/);
  });

  it("lets a listed origin read the answer and its rate-limit and request-id headers", async () => {
    const res = await ctx.api.post("/conversations", {}, { origin: "http://localhost:5173" });
    expect(res.status).toBe(201);
    expect(res.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    const exposed = res.headers.get("access-control-expose-headers")!.split(",");
    expect(exposed).toEqual(expect.arrayContaining(["x-request-id", "x-ratelimit-remaining-requests", "retry-after", "idempotent-replayed"]));
    expect(res.headers.get("x-ratelimit-remaining-requests")).not.toBeNull();
    expect(res.headers.get("vary")).toMatch(/Origin/);
  });

  it("lets a listed origin read an error too (a 401 without a key)", async () => {
    const res = await fetch(`${ctx.service.url}/v1/conversations`, { headers: { origin: APP } });
    expect(res.status).toBe(401);
    expect(res.headers.get("access-control-allow-origin")).toBe(APP);
    expect(res.headers.get("x-request-id")).not.toBeNull();
  });

  it("does not allow an origin that is not listed, preflight or not", async () => {
    const pre = await preflight(`${ctx.service.url}/v1/conversations`, "https://evil.example.com");
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    const res = await ctx.api.get("/models", { origin: "https://app.example.com.evil.example.com" });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(res.headers.get("vary")).toMatch(/Origin/);
  });
});

describe("CORS not configured (the default)", () => {
  const ctx = useTestService();

  it("sends no CORS header, on a preflight or an answer", async () => {
    const pre = await preflight(`${ctx.service.url}/v1/conversations`, APP);
    expect(pre.status).not.toBe(204);
    expect(corsHeaders(pre.headers)).toEqual([]);
    const res = await ctx.api.get("/models", { origin: APP });
    expect(res.status).toBe(200);
    expect(corsHeaders(res.headers)).toEqual([]);
  });
});

describe("CORS open to every origin (*)", () => {
  const app = new Hono().use(corsFor(["*"])).get("/", (c) => c.text("ok"));

  it("answers any origin with *, never with credentials, and needs no Vary", async () => {
    const res = await app.request("/", { headers: { origin: "https://anywhere.example" } });
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(res.headers.get("access-control-expose-headers")).toBe(EXPOSED_HEADERS.join(","));
    expect(res.headers.get("vary")).toBeNull();
  });
});
