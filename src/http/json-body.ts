import { createMiddleware } from "hono/factory";
import type { AppEnv } from "./env.ts";
import { ApiError } from "./errors.ts";
import { MAX_JSON_DEPTH } from "./input-limits.ts";

/** The media types Hono's JSON validator parses (`application/json`, `application/…+json`). */
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * Refuses, before any route reads it, a JSON body the route's validator would
 * otherwise change without saying so: bytes that are not UTF-8 (decoded as
 * U+FFFD, so a lone surrogate sent as ED A0 80 would be stored as "���"), and
 * `__proto__` keys (zod drops them from records and passthrough objects, and
 * a plain assignment would take one as the object's prototype).
 */
export const checkJsonBody = createMiddleware<AppEnv>(async (c, next) => {
  const mediaType = (c.req.header("content-type") ?? "").split(";")[0]!.trim();
  if (!c.req.raw.body || !JSON_MEDIA_TYPE.test(mediaType)) return next();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer());
  } catch {
    throw new ApiError(400, "The request body is not valid UTF-8 (JSON text must be).", "invalid_json");
  }
  // The validator's `c.req.json()` parses this text instead of decoding the bytes again (Hono keeps
  // promises in bodyCache, whatever its declared type says).
  (c.req.bodyCache as Record<string, Promise<unknown>>).text = Promise.resolve(text);
  // A key can only read `__proto__` if the text spells it out or escapes a letter of it (`\u…`):
  // most bodies do neither, and are not parsed twice.
  if (!text.includes("__proto__") && !text.includes("\\u")) return next();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return next(); // the validator answers invalid_json
  }
  const at = protoKeyPath(value);
  if (at !== null) throw new ApiError(400, `${at}: \`__proto__\` cannot be a key.`, "invalid_request", at);
  return next();
});

/** Where the first own `__proto__` key is (`metadata.__proto__`), or null; deeper than any body may nest is not looked at. */
function protoKeyPath(value: unknown): string | null {
  const stack: [unknown, string, number][] = [[value, "", 0]];
  while (stack.length > 0) {
    const [v, path, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null || depth > MAX_JSON_DEPTH) continue;
    const entries: [string, unknown][] = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : Object.entries(v);
    for (const [key, item] of entries) {
      const at = path ? `${path}.${key}` : key;
      if (key === "__proto__" && !Array.isArray(v)) return at;
      stack.push([item, at, depth + 1]);
    }
  }
  return null;
}
