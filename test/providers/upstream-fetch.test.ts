import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upstreamFetch } from "../../src/providers/upstream-fetch.ts";
import { freePort } from "../support/processes.ts";

/** A server answering as `handle` says. */
let server: Server;
let base: string;
let handle: (req: IncomingMessage, body: string, res: ServerResponse) => void;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (body += d));
    req.on("end", () => handle(req, body, res));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => expect.unreachable("should have rejected"),
    (err: unknown) => err,
  );

describe("upstreamFetch", () => {
  it("sends the method, headers and body, and answers with the status, headers and body", async () => {
    let seen: { method?: string; headers?: IncomingMessage["headers"]; body?: string } = {};
    handle = (req, body, res) => {
      seen = { method: req.method, headers: req.headers, body };
      res.writeHead(418, "Teapot", { "content-type": "application/json", "x-request-id": "req_1" });
      res.end(JSON.stringify({ ok: "é" }));
    };
    const headers = new Headers({ "content-type": "application/json", authorization: "Bearer k" });
    const response = await upstreamFetch(`${base}/v1/chat/completions`, { method: "post", headers, body: '{"a":"é"}' });
    expect(seen.method).toBe("POST");
    expect(seen.headers).toMatchObject({ authorization: "Bearer k", "content-type": "application/json", "content-length": "10" });
    expect(seen.body).toBe('{"a":"é"}');
    expect(response.status).toBe(418);
    expect(response.statusText).toBe("Teapot");
    expect(response.headers.get("x-request-id")).toBe("req_1");
    expect(await response.json()).toEqual({ ok: "é" });
  });

  it("keeps one connection for calls one after another, a stream read to [DONE] and left included", async () => {
    // The client's ports: one connection is one port (the agent is shared, so it may be an earlier test's).
    const ports = new Set<number | undefined>();
    handle = (req, _body, res) => {
      ports.add(req.socket.remotePort);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end('data: {"n":1}\n\ndata: [DONE]\n\n');
    };
    for (let i = 0; i < 5; i++) {
      const response = await upstreamFetch(`${base}/s`, { method: "POST", body: "{}" });
      const reader = response.body!.getReader();
      let text = "";
      while (!text.includes("[DONE]")) text += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
    }
    expect(ports.size).toBe(1);
  });

  it("errors the body when the connection is cut before its end", async () => {
    handle = (_req, _body, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"n":1}\n\n', () => setTimeout(() => res.socket?.destroy(), 20));
    };
    const response = await upstreamFetch(`${base}/s`, { method: "POST", body: "{}" });
    const err = await rejection(response.text());
    expect(err).toBeInstanceOf(TypeError);
  });

  it("rejects with the signal's reason when aborted before the answer, and errors the body when aborted during it", async () => {
    handle = (_req, _body, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: {}\n\n");
    };
    const early = new AbortController();
    const reason = new Error("gone");
    const pending = upstreamFetch(`${base}/s`, { method: "POST", body: "{}", signal: early.signal });
    early.abort(reason);
    expect(await rejection(pending)).toBe(reason);
    expect(await rejection(upstreamFetch(`${base}/s`, { method: "POST", body: "{}", signal: early.signal }))).toBe(reason);

    const late = new AbortController();
    const response = await upstreamFetch(`${base}/s`, { method: "POST", body: "{}", signal: late.signal });
    const reader = response.body!.getReader();
    await reader.read();
    late.abort(reason);
    expect(await rejection(reader.read())).toBe(reason);
  });

  it("decodes a body the upstream compressed", async () => {
    handle = (_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(gzipSync(JSON.stringify({ choices: [] })));
    };
    expect(await (await upstreamFetch(`${base}/c`, { method: "POST", body: "{}" })).json()).toEqual({ choices: [] });
  });

  it("answers a status without a body with a null body", async () => {
    handle = (_req, _body, res) => {
      res.writeHead(204);
      res.end();
    };
    const response = await upstreamFetch(`${base}/c`, { method: "POST", body: "{}" });
    expect(response.status).toBe(204);
    expect(response.body).toBeNull();
  });

  it("rejects as fetch does (TypeError, the cause attached) when nothing listens", async () => {
    const err = await rejection(upstreamFetch(`http://127.0.0.1:${await freePort()}/v1`, { method: "POST", body: "{}" }));
    expect(err).toBeInstanceOf(TypeError);
    expect((err as TypeError).cause).toMatchObject({ code: "ECONNREFUSED" });
  });

  it("leaves a body it does not take (a stream) to the global fetch", async () => {
    let seen = "";
    handle = (_req, body, res) => {
      seen = body;
      res.end("ok");
    };
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode("streamed"));
        c.close();
      },
    });
    const response = await upstreamFetch(`${base}/c`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(await response.text()).toBe("ok");
    expect(seen).toBe("streamed");
  });
});
