import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { listenOnLoopback } from "./loopback-server.ts";

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
      /**
       * The reply calls these tools (finish_reason `tool_calls`; non-streamed: `message.tool_calls`, and
       * `content: null` unless `text` is given). Streamed as `toolCallStyle` says, arguments in fragments.
       */
      toolCalls?: FakeToolCall[];
      /** How tool calls are streamed (default "openai"); see `FakeToolCallStyle`. */
      toolCallStyle?: FakeToolCallStyle;
      /** Argument fragments are at most this many characters (default 6). */
      argumentFragmentChars?: number;
      /** Reasoning deltas sent before any content (non-streamed: the message's reasoning field, joined). */
      reasoning?: string[];
      /** The delta field reasoning travels in: `reasoning_content` (DeepSeek, vLLM; default) or `reasoning` (Together, newer vLLM). */
      reasoningField?: "reasoning_content" | "reasoning";
      /** Wait this long before each reasoning delta (a model thinking for a while, sending life). */
      reasoningDelayMs?: number;
      /** Send no role-only first chunk: the reasoning (or whatever comes first) is the first sign of life. */
      noRoleChunk?: boolean;
      /** Attach OpenAI-shaped logprobs to each content delta (non-streamed: to the choice), `top_logprobs` as asked. */
      logprobs?: boolean;
      /** Answer with `n` choices as the request asks (choice i > 0 says `<text> (choice i)`); streamed choice by choice, interleaved. */
      honourN?: boolean;
      /** Add these to the usage (as OpenAI reports cached and reasoning tokens). */
      usageDetails?: { prompt_tokens_details?: Record<string, unknown>; completion_tokens_details?: Record<string, unknown> };
    }
  /**
   * Decide per request: `pick` sees the request (body and raw text) and returns the behaviour to use, so a
   * multi-step exchange (a tool loop) can be driven; see `toolLoop`.
   */
  | { kind: "script"; pick: (request: { body: any; raw: string }) => FakeBehaviour }
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
  /** The body exactly as received (to check key order, which parsing and comparing with toEqual would hide). */
  raw: string;
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

/** A tool call the fake makes; `id` defaults to `call_<n>_<i>` (n counts requests, i the call). */
export interface FakeToolCall {
  id?: string;
  name: string;
  /** The arguments as the JSON text the model writes. */
  arguments: string;
}

/**
 * How servers stream a tool call:
 * - "openai": first fragment `{index, id, type, function: {name, arguments: ""}}`, then `{index, function: {arguments}}`;
 *   the role chunk says `content: null`.
 * - "vllm": first fragment `{id, type, index, function: {name}}` (no arguments), then `{index, function: {arguments}}`;
 *   the role chunk says `content: ""`.
 * - "together": `id` and `type` repeated on every fragment.
 * - "whole": each call in one fragment, name and all its arguments.
 */
export type FakeToolCallStyle = "openai" | "vllm" | "together" | "whole";

/** An upstream error answer as OpenAI sends one: `{error: {message, type, param, code}}`. */
export function upstreamError(
  status: number,
  error: { message?: string; type?: string; param?: string | null; code?: string | null },
): FakeBehaviour {
  return {
    kind: "status",
    status,
    body: { error: { message: error.message ?? `fake ${status}`, type: error.type ?? "invalid_request_error", param: error.param ?? null, code: error.code ?? null } },
  };
}

/**
 * A tool loop's upstream: a request whose last message is a `tool` result is answered with text
 * (`answer(toolResults)`, default `Tool said: <contents joined by " | ">`); any other request with `calls`.
 */
export function toolLoop(opts: {
  calls: FakeToolCall[];
  style?: FakeToolCallStyle;
  answer?: (toolResults: string[]) => string;
  /** Extra fields for both answers (reasoning, logprobs, delays). */
  extra?: Omit<Extract<FakeBehaviour, { kind: "ok" }>, "kind" | "toolCalls" | "text">;
}): FakeBehaviour {
  return {
    kind: "script",
    pick({ body }) {
      const messages: any[] = Array.isArray(body.messages) ? body.messages : [];
      if (messages.at(-1)?.role !== "tool") return { kind: "ok", ...opts.extra, toolCalls: opts.calls, toolCallStyle: opts.style };
      const results: string[] = [];
      for (let i = messages.length - 1; i >= 0 && messages[i].role === "tool"; i--) {
        const c = messages[i].content;
        results.unshift(typeof c === "string" ? c : JSON.stringify(c));
      }
      return { kind: "ok", ...opts.extra, text: opts.answer ? opts.answer(results) : `Tool said: ${results.join(" | ")}` };
    },
  };
}

/** The fragments a server streams for `calls` in `style` (each one a `delta.tool_calls` entry). */
export function toolCallFragments(calls: Required<FakeToolCall>[], style: FakeToolCallStyle, fragmentChars: number): object[] {
  const out: object[] = [];
  for (const [index, call] of calls.entries()) {
    if (style === "whole") {
      out.push({ index, id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } });
      continue;
    }
    if (style === "vllm") out.push({ id: call.id, type: "function", index, function: { name: call.name } });
    else out.push({ index, id: call.id, type: "function", function: { name: call.name, arguments: "" } });
    for (let at = 0; at < call.arguments.length; at += fragmentChars) {
      const args = call.arguments.slice(at, at + fragmentChars);
      out.push(style === "together" ? { index, id: call.id, type: "function", function: { arguments: args } } : { index, function: { arguments: args } });
    }
  }
  return out;
}

/** OpenAI-shaped logprobs for one token. */
const tokenLogprobs = (token: string, top: number) => ({
  token,
  logprob: -0.25,
  bytes: [...Buffer.from(token, "utf8")],
  top_logprobs: Array.from({ length: top }, (_, k) => ({ token: k === 0 ? token : `${token}~${k}`, logprob: -0.25 * (k + 1), bytes: null })),
});
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
    const raw = Buffer.concat(chunks).toString("utf8");
    let body: any;
    try {
      body = JSON.parse(raw);
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw new TypeError("not an object");
    } catch {
      return json(res, 400, { error: { message: "body is not a JSON object", type: "invalid_request_error", param: null, code: null } });
    }
    if (opts.record !== false) {
      const recorded: RecordedRequest = { body, raw, headers: req.headers, closedEarly: false, startedAt: Date.now() };
      res.on("close", () => {
        recorded.closedEarly = !res.writableFinished;
        recorded.endedAt = Date.now();
      });
      requests.push(recorded);
    }
    let b = (opts.behaviourFromModel ? behaviourFromModel(String(body.model)) : null) ?? queued.shift() ?? behaviour;
    while (b.kind === "script") b = b.pick({ body, raw });
    const id = `chatcmpl-fake-${++counter}`;
    const messages: { role: string; content: unknown }[] = Array.isArray(body.messages) ? body.messages : [];
    const contentText = (c: unknown) => (typeof c === "string" ? c : JSON.stringify(c ?? ""));
    const lastUser = contentText([...messages].reverse().find((m) => m.role === "user")?.content ?? "");

    if (b.kind === "hang") return; // answered by close()
    if (b.kind === "status") {
      res.writeHead(b.status, { "content-type": "application/json", ...b.headers });
      return res.end(JSON.stringify(b.body ?? { error: { message: `fake ${b.status}`, type: "server_error", param: null, code: null } }));
    }
    if (b.kind === "ok" && (b.toolCalls || b.reasoning || b.logprobs || b.honourN)) {
      return answerRich(res, body, b, id, counter, fakeReplyText(lastUser), messages.reduce((n, m) => n + fakeTokens(contentText(m.content)).length, 0));
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
    if (b.kind === "ok") Object.assign(usage, b.usageDetails);
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
  const { port, close } = await listenOnLoopback(server, { port: opts.port });

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
    close,
  };
}

/**
 * An "ok" answer with tool calls, reasoning, logprobs or several choices, shaped as OpenAI (or the
 * server `toolCallStyle` names) sends it.
 */
async function answerRich(
  res: ServerResponse,
  body: any,
  b: Extract<FakeBehaviour, { kind: "ok" }>,
  id: string,
  requestNumber: number,
  defaultText: string,
  promptTokens: number,
) {
  const baseText = b.text ?? (b.replyTokens !== undefined ? numberedTokens(b.replyTokens).join("") : b.tokens ? b.tokens.join("") : b.toolCalls ? null : defaultText);
  const style = b.toolCallStyle ?? "openai";
  const reasoning = b.reasoning ?? [];
  const reasoningField = b.reasoningField ?? "reasoning_content";
  const top = Number(body.top_logprobs ?? 0);
  const choiceCount = b.honourN && Number.isInteger(body.n) && body.n > 1 ? (body.n as number) : 1;
  const choices = Array.from({ length: choiceCount }, (_, i) => {
    const text = baseText === null ? null : i === 0 ? baseText : `${baseText} (choice ${i})`;
    const tokens = text === null ? [] : i === 0 && b.tokens ? b.tokens : fakeTokens(text);
    const calls = (b.toolCalls ?? []).map((c, k) => ({ id: c.id ?? `call_${requestNumber}_${k}${i ? `_${i}` : ""}`, name: c.name, arguments: c.arguments }));
    return { index: i, text, tokens, calls, fragments: toolCallFragments(calls, style, b.argumentFragmentChars ?? 6) };
  });
  const finishReason = b.toolCalls?.length ? "tool_calls" : "stop";
  const completionTokens = choices.reduce((n, c) => n + c.tokens.length + c.fragments.length + reasoning.length, 0);
  const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens, ...b.usageDetails };
  const created = Math.floor(Date.now() / 1000);

  if (b.ttftMs) await sleep(b.ttftMs);
  if (!body.stream) {
    if (b.reasoningDelayMs) await sleep(b.reasoningDelayMs * reasoning.length);
    return json(res, 200, {
      id,
      object: "chat.completion",
      created,
      model: body.model,
      choices: choices.map((c) => ({
        index: c.index,
        message: {
          role: "assistant",
          content: c.text,
          ...(reasoning.length ? { [reasoningField]: reasoning.join("") } : {}),
          ...(c.calls.length ? { tool_calls: c.calls.map((t) => ({ id: t.id, type: "function", function: { name: t.name, arguments: t.arguments } })) } : {}),
        },
        ...(b.logprobs ? { logprobs: { content: c.tokens.map((t) => tokenLogprobs(t, top)) } } : {}),
        finish_reason: finishReason,
      })),
      usage,
    });
  }

  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const send = (index: number, delta: object, finish: string | null, logprobs?: unknown) =>
    res.destroyed ||
    res.write(
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: body.model, choices: [{ index, delta, ...(logprobs ? { logprobs } : {}), finish_reason: finish }] })}\n\n`,
    );
  if (!b.noRoleChunk) for (const c of choices) send(c.index, { role: "assistant", content: c.text === null && style === "openai" ? null : "" }, null);
  for (const r of reasoning) {
    if (b.reasoningDelayMs) await sleep(b.reasoningDelayMs);
    for (const c of choices) send(c.index, { [reasoningField]: r }, null);
  }
  const longest = Math.max(...choices.map((c) => c.tokens.length));
  for (let t = 0; t < longest; t++) {
    if (t > 0 && b.tokenDelayMs) await sleep(b.tokenDelayMs);
    for (const c of choices) {
      const token = c.tokens[t];
      if (token !== undefined) send(c.index, { content: token }, null, b.logprobs ? { content: [tokenLogprobs(token, top)] } : undefined);
    }
  }
  for (const c of choices) for (const f of c.fragments) send(c.index, { tool_calls: [f] }, null);
  if (b.finishDelayMs) await sleep(b.finishDelayMs);
  if (res.destroyed) return; // the client left
  for (const c of choices) send(c.index, {}, finishReason);
  if (body.stream_options?.include_usage) res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: body.model, choices: [], usage })}\n\n`);
  res.end("data: [DONE]\n\n");
}

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
