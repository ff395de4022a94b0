import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postForEvents } from "../support/http.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { startTestService, type TestService } from "../support/service.ts";

/**
 * Clients that send slowly, or hold connections: bounded by the HTTP server's
 * timeouts and connection cap (small here), never held for minutes.
 */
const HEADERS_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 2000;
/** Far below Node's defaults (60 s for headers, 300 s for a request), far above the bounds set here. */
const CLOSE_BOUND_MS = 20_000;

interface RawConnection {
  socket: Socket;
  /** What the server sent, and whether it closed, once it has closed (or after CLOSE_BOUND_MS). */
  ended: Promise<{ received: string; closed: boolean }>;
}

function rawConnection(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (d) => (received += d));
    socket.on("error", () => {});
    const ended = new Promise<{ received: string; closed: boolean }>((done) => {
      const timer = setTimeout(() => done({ received, closed: false }), CLOSE_BOUND_MS);
      socket.on("close", () => {
        clearTimeout(timer);
        done({ received, closed: true });
      });
    });
    socket.once("connect", () => resolve({ socket, ended }));
    socket.once("error", reject);
  });
}

/** Writes `chunks` one by one, `everyMs` apart, until they run out or the socket closes. */
function dribble(socket: Socket, chunks: string[], everyMs: number): void {
  const timer = setInterval(() => {
    const next = chunks.shift();
    if (next === undefined || socket.destroyed) return clearInterval(timer);
    socket.write(next);
  }, everyMs);
  socket.on("close", () => clearInterval(timer));
}

let service: TestService;
let port: number;
beforeAll(async () => {
  service = await startTestService({
    HTTP_HEADERS_TIMEOUT_MS: HEADERS_TIMEOUT_MS,
    HTTP_REQUEST_TIMEOUT_MS: REQUEST_TIMEOUT_MS,
  });
  port = Number(new URL(service.url).port);
});
afterAll(() => service?.stop());

describe("slow clients", () => {
  it("answers 408 and closes a connection whose headers trickle in", async () => {
    const conn = await rawConnection(port);
    conn.socket.write("GET /healthz HTTP/1.1\r\nHost: parley\r\n");
    // A header line every 200 ms, for a minute: never a complete head.
    dribble(conn.socket, Array.from({ length: 300 }, (_, i) => `X-Slow-${i}: a\r\n`), 200);
    const { received, closed } = await conn.ended;
    expect(closed).toBe(true);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("answers 408 and closes a connection whose body trickles in", async () => {
    const conn = await rawConnection(port);
    const body = JSON.stringify({ title: "x".repeat(400) });
    conn.socket.write(
      "POST /v1/conversations HTTP/1.1\r\nHost: parley\r\nContent-Type: application/json\r\n" +
        `Authorization: Bearer ${TEST_API_KEY}\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    // A byte every 100 ms: the whole body would take 40 s.
    dribble(conn.socket, body.split(""), 100);
    const { received, closed } = await conn.ended;
    expect(closed).toBe(true);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(await service.sql`select 1 from conversations`).toHaveLength(0);
  });

  it("does not cut a streamed reply that lasts longer than the request timeout", async () => {
    const { body: conv } = await fetch(`${service.url}/v1/conversations`, {
      method: "POST",
      headers: { authorization: `Bearer ${TEST_API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "parley-sim-1" }),
    }).then(async (r) => ({ body: (await r.json()) as { id: string } }));
    // First token after twice the request timeout, then a few more.
    const streamed = await postForEvents(`${service.url}/v1/conversations/${conv.id}/messages`, {
      content: "slowly, please",
      stream: true,
      params: { simulate: { ttft_ms: 2 * REQUEST_TIMEOUT_MS, reply_tokens: 5, tokens_per_second: 5 } },
    });
    expect(streamed.status).toBe(200);
    expect(streamed.events.map((e) => e.event)).toContain("message.completed");
    expect(streamed.events.at(-1)?.event).toBe("done");
  });
});

describe("the connection cap", () => {
  let capped: TestService;
  beforeAll(async () => {
    capped = await startTestService({ HTTP_MAX_CONNECTIONS: 5 });
  });
  afterAll(() => capped?.stop());

  it("closes connections beyond HTTP_MAX_CONNECTIONS at once, and serves again when some close", async () => {
    const cappedPort = Number(new URL(capped.url).port);
    // Open, idle connections (the headers timeout, 10 s by default, lets them be meanwhile).
    const held: RawConnection[] = [];
    for (let i = 0; i < 5; i++) held.push(await rawConnection(cappedPort));
    await new Promise((r) => setTimeout(r, 200));
    const extra = await rawConnection(cappedPort);
    const { received, closed } = await extra.ended;
    expect(closed).toBe(true);
    expect(received).toBe("");
    for (const c of held) c.socket.destroy();
    await Promise.all(held.map((c) => c.ended));
    const res = await fetch(`${capped.url}/healthz`);
    expect(res.status).toBe(200);
  });
});
