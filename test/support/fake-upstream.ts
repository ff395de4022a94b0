import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A fake OpenAI-compatible upstream over real HTTP, for tests: it records
 * every chat-completions request and answers as told.
 *
 * The reply, unless a behaviour says otherwise, is `fakeReplyText(lastUser)`
 * = `Reply to: <content of the last user message>`, sent as the deltas
 * `fakeTokens(text)` (split before each space: "Reply to: hi you" →
 * ["Reply", " to:", " hi", " you"]). Usage counts tokens the same way:
 * prompt_tokens over every message's content, completion_tokens = deltas.
 */

export type FakeBehaviour =
  | {
      /** Answer normally; streams wait `ttftMs` before the first delta and `tokenDelayMs` between deltas. */
      kind: "ok";
      ttftMs?: number;
      tokenDelayMs?: number;
      /** The reply text instead of `Reply to: …` (still sent as `fakeTokens(text)`). */
      text?: string;
      /** Answer with this many tokens (` w0`, ` w1`, …) instead of `Reply to: …`. */
      replyTokens?: number;
      /** Send exactly these deltas (any text: NUL, halves of a surrogate pair) instead of `Reply to: …`. */
      tokens?: string[];
      /** Append the send time (`@<epoch ms>`) to each token, to measure relay lag. */
      stampTokens?: boolean;
      /** Wait this long after the last delta before the finish chunk (a reply that ends later, with nothing to stream). */
      finishDelayMs?: number;
    }
  /** Answer with this status and JSON body (default: an OpenAI-shaped error), e.g. 429 with `Retry-After`. */
  | { kind: "status"; status: number; body?: unknown; headers?: Record<string, string> }
  /**
   * Stream `afterTokens` deltas, then destroy the socket with no finish chunk
   * and no [DONE]. Without streaming: destroy the socket before answering.
   */
  | { kind: "drop"; afterTokens: number }
  /**
   * Stream `afterTokens` deltas, then write `raw` exactly as given (an error event, a malformed event) and
   * end the response. Without streaming: answer 200 with `raw` as the body.
   */
  | { kind: "stream-then"; afterTokens: number; raw: string }
  /** Take the request and never answer; `close()` ends it. */
  | { kind: "hang" };

export interface RecordedRequest {
  /** The JSON body as parsed. */
  body: any;
  headers: IncomingMessage["headers"];
  /** Set when the client closed the connection before the answer was complete (an aborted call). */
  closedEarly: boolean;
  /** When the request arrived and when its connection closed (epoch ms): to tell whether two calls overlapped. */
  startedAt: number;
  endedAt?: number;
}

export interface FakeUpstream {
  /** Base URL ending in /v1, as SDKs and Parley's UPSTREAMS take it. */
  baseURL: string;
  /** Every POST /v1/chat/completions, in arrival order. */
  requests: RecordedRequest[];
  /** The behaviour for every request from now on (a queued one-shot behaviour goes first). */
  setBehaviour(b: FakeBehaviour): void;
  /** A behaviour for the next request only (queued in order). */
  queueBehaviour(b: FakeBehaviour): void;
  /** The text the fake answers to a conversation whose last user message is `lastUser`. */
  replyTextFor(lastUser: string): string;
  /** Forget recorded requests and queued behaviours; back to `{ kind: "ok" }`. */
  reset(): void;
  /** Ends hanging and streaming requests (destroys their sockets) and stops listening. */
  close(): Promise<void>;
}

export const fakeReplyText = (lastUser: string) => `Reply to: ${lastUser}`;
/** The deltas the fake sends: words, each after the first with its leading space. */
export const fakeTokens = (text: string) => text.split(/(?= )/);

/** ` w0`, ` w1`, …: a reply whose order a reader can check. */
export const numberedTokens = (n: number) => Array.from({ length: n }, (_, i) => ` w${i}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `bench-<ttftMs>-<tokenDelayMs>-<replyTokens>[-stamp]`: a model name that
 * carries its own behaviour, so one fake serves every benchmark case.
 */
export function behaviourFromModel(model: string): FakeBehaviour | null {
  const m = /^bench-(\d+)-(\d+)-(\d+)(-stamp)?$/.exec(model);
  if (!m) return null;
  return { kind: "ok", ttftMs: Number(m[1]), tokenDelayMs: Number(m[2]), replyTokens: Number(m[3]), stampTokens: Boolean(m[4]) };
}

export async function startFakeUpstream(
  opts: { port?: number; behaviourFromModel?: boolean; record?: boolean } = {},
): Promise<FakeUpstream> {
  const requests: RecordedRequest[] = [];
  let behaviour: FakeBehaviour = { kind: "ok" };
  const queued: FakeBehaviour[] = [];
  const sockets = new Set<Socket>();
  let counter = 0;

  const server = createServer(async (req, res) => {
    if (req.method === "GET" && req.url === "/v1/models") {
      return json(res, 200, { object: "list", data: [{ id: "fake-model", object: "model", created: 0, owned_by: "fake" }] });
    }
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
      return json(res, 404, { error: { message: "not found", type: "invalid_request_error", param: null, code: null } });
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw new TypeError("not an object");
    } catch {
      return json(res, 400, { error: { message: "body is not a JSON object", type: "invalid_request_error", param: null, code: null } });
    }
    if (opts.record !== false) {
      const recorded: RecordedRequest = { body, headers: req.headers, closedEarly: false, startedAt: Date.now() };
      res.on("close", () => {
        recorded.closedEarly = !res.writableFinished;
        recorded.endedAt = Date.now();
      });
      requests.push(recorded);
    }
    const b = (opts.behaviourFromModel ? behaviourFromModel(String(body.model)) : null) ?? queued.shift() ?? behaviour;
    const id = `chatcmpl-fake-${++counter}`;
    const messages: { role: string; content: unknown }[] = Array.isArray(body.messages) ? body.messages : [];
    const contentText = (c: unknown) => (typeof c === "string" ? c : JSON.stringify(c ?? ""));
    const lastUser = contentText([...messages].reverse().find((m) => m.role === "user")?.content ?? "");

    if (b.kind === "hang") return; // answered by close()
    if (b.kind === "status") {
      res.writeHead(b.status, { "content-type": "application/json", ...b.headers });
      return res.end(JSON.stringify(b.body ?? { error: { message: `fake ${b.status}`, type: "server_error", param: null, code: null } }));
    }
    const text =
      b.kind === "ok" && b.text !== undefined
        ? b.text
        : b.kind === "ok" && b.replyTokens !== undefined
          ? numberedTokens(b.replyTokens).join("")
          : fakeReplyText(lastUser);
    const tokens = b.kind === "ok" && b.tokens ? b.tokens : fakeTokens(text);
    const stamp = b.kind === "ok" && b.stampTokens === true;
    const usage = {
      prompt_tokens: messages.reduce((n, m) => n + fakeTokens(contentText(m.content)).length, 0),
      completion_tokens: tokens.length,
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    const created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      if (b.kind === "drop") return req.socket.destroy();
      if (b.kind === "stream-then") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(b.raw);
      }
      if (b.ttftMs) await sleep(b.ttftMs);
      return json(res, 200, {
        id,
        object: "chat.completion",
        created,
        model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
        usage,
      });
    }

    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    const chunk = (delta: object, finish: string | null) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: body.model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    if (b.kind === "ok" && b.ttftMs) await sleep(b.ttftMs);
    send(chunk({ role: "assistant", content: "" }, null));
    const cut = async () => {
      // Let the tokens already written reach the client, then cut the connection.
      await sleep(20);
      req.socket.destroy();
    };
    for (const [i, token] of tokens.entries()) {
      if (b.kind === "drop" && i === b.afterTokens) return cut();
      if (b.kind === "stream-then" && i === b.afterTokens) return res.end(b.raw);
      if (i > 0 && b.kind === "ok" && b.tokenDelayMs) await sleep(b.tokenDelayMs);
      if (res.destroyed) return; // the client left
      send(chunk({ content: stamp ? `${token}@${performance.timeOrigin + performance.now()}` : token }, null));
    }
    if (b.kind === "drop") return cut(); // afterTokens ≥ the reply's length: cut before the finish
    if (b.kind === "ok" && b.finishDelayMs) {
      await sleep(b.finishDelayMs);
      if (res.destroyed) return; // the client left
    }
    if (b.kind === "stream-then") return res.end(b.raw);
    send(chunk({}, "stop"));
    if (body.stream_options?.include_usage) send({ id, object: "chat.completion.chunk", created, model: body.model, choices: [], usage });
    res.end("data: [DONE]\n\n");
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(opts.port ?? 0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    setBehaviour: (b) => void (behaviour = b),
    queueBehaviour: (b) => void queued.push(b),
    replyTextFor: fakeReplyText,
    reset() {
      requests.length = 0;
      queued.length = 0;
      behaviour = { kind: "ok" };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
