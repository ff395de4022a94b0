// @ts-check
import { createParser } from "eventsource-parser";

/** An answer of the API that was not a success, in its documented error shape. */
export class ApiError extends Error {
  /** @param {number} status @param {{message?: string, type?: string, code?: string|null, param?: string|null}} error */
  constructor(status, error) {
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? null;
    this.param = error.param ?? null;
  }
}

/** @typedef {{ id: string | undefined, event: string | undefined, data: string }} StreamEvent */

/**
 * The console's only way to Parley: the public /v1 API with the signed-in key. A 401 from any call
 * means the key is wrong or was revoked, and `onUnauthorized` signs the tab out.
 * @param {string} apiKey
 * @param {() => void} onUnauthorized
 */
export function createApi(apiKey, onUnauthorized) {
  /** @param {string} method @param {string} path @param {{ body?: unknown, query?: Record<string, string | number | undefined>, headers?: Record<string,string>, signal?: AbortSignal }} [opts] */
  async function call(method, path, opts = {}) {
    const url = new URL(`/v1${path}`, location.origin);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== "") url.searchParams.set(k, String(v));
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${apiKey}`, ...opts.headers };
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(url, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  /** @param {Response} res */
  async function errorOf(res) {
    let error = {};
    try {
      error = (await res.json()).error ?? {};
    } catch {
      // Not the documented shape (a proxy's page): the status says enough.
    }
    if (res.status === 401) onUnauthorized();
    return new ApiError(res.status, error);
  }

  return {
    /** @param {string} path @param {Record<string, string | number | undefined>} [query] */
    async get(path, query) {
      return (await call("GET", path, { query })).json();
    },
    /** @param {string} path @param {unknown} [body] */
    async post(path, body = {}) {
      return (await call("POST", path, { body })).json();
    },
    /** @param {string} path @param {unknown} body */
    async patch(path, body) {
      return (await call("PATCH", path, { body })).json();
    },
    /**
     * A request answered with Server-Sent Events (a streamed append or regenerate, or a reply's events):
     * calls `onEvent` for each event and resolves when the stream ends. fetch, not EventSource: EventSource
     * cannot send the Authorization header, and the key must not go in the URL.
     * @param {"GET" | "POST"} method @param {string} path
     * @param {{ body?: unknown, lastEventId?: string, signal?: AbortSignal, onEvent: (e: StreamEvent) => void }} opts
     */
    async stream(method, path, opts) {
      /** @type {Record<string, string>} */
      const headers = { accept: "text/event-stream" };
      if (opts.lastEventId) headers["last-event-id"] = opts.lastEventId;
      const res = await call(method, path, { body: opts.body, headers, signal: opts.signal });
      if (!res.body) return;
      const parser = createParser({ onEvent: (e) => opts.onEvent({ id: e.id, event: e.event, data: e.data }) });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(value);
      }
    },
  };
}

/** @typedef {ReturnType<typeof createApi>} Api */
