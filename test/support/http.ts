import { EventSourceParserStream } from "eventsource-parser/stream";
import { TEST_API_KEY } from "./keys.ts";

/** A small JSON client for the API under test: real HTTP through fetch, as the holder of `apiKey`. */
export function apiClient(baseUrl: string, apiKey = TEST_API_KEY) {
  async function request<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${apiKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: T;
    try {
      json = JSON.parse(text) as T;
    } catch {
      throw new Error(`${method} ${path} answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
    }
    return { status: res.status, headers: res.headers, body: json };
  }
  return {
    request,
    get: <T = any>(path: string, headers?: Record<string, string>) => request<T>("GET", path, undefined, headers),
    post: <T = any>(path: string, body?: unknown, headers?: Record<string, string>) => request<T>("POST", path, body, headers),
    patch: <T = any>(path: string, body?: unknown, headers?: Record<string, string>) => request<T>("PATCH", path, body, headers),
    delete: <T = any>(path: string, headers?: Record<string, string>) => request<T>("DELETE", path, undefined, headers),
  };
}

export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/** POSTs and reads the whole SSE answer, plus the comment lines seen. */
export async function postForEvents(
  url: string,
  body: unknown,
): Promise<{ status: number; contentType: string | null; events: SseEvent[]; comments: string[] }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TEST_API_KEY}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, contentType: res.headers.get("content-type"), ...(await readEvents(res)) };
}

export async function readEvents(res: Response): Promise<{ events: SseEvent[]; comments: string[] }> {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  if (!res.body) return { events, comments };
  const stream = res.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream({ onComment: (c) => comments.push(c) }));
  for await (const e of stream) events.push({ id: e.id, event: e.event, data: e.data });
  return { events, comments };
}

/** fetch as the holder of `apiKey` (TEST_API_KEY unless told): the Authorization header added to `init`'s. */
export function authedFetch(url: string, init: RequestInit = {}, apiKey = TEST_API_KEY): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${apiKey}`);
  return fetch(url, { ...init, headers });
}

/** The content a follower was sent: its deltas after the last `message.reset` (which means "drop what you had"). */
export function followedContent(events: readonly { event?: string | undefined; data: string }[]): string {
  const lastReset = events.findLastIndex((e) => e.event === "message.reset");
  return events
    .slice(lastReset + 1)
    .filter((e) => e.event === "message.delta")
    .map((e) => (JSON.parse(e.data) as { delta: { content: string } }).delta.content)
    .join("");
}
