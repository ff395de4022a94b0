import { createMiddleware } from "hono/factory";
import type { AppEnv } from "./env.ts";
import { ApiError } from "./errors.ts";
import { MAX_JSON_DEPTH, MESSAGE_LISTS, tooManyMessages, type InputLimits, type LimitBreach } from "./input-limits.ts";

/** The media types Hono's JSON validator parses (`application/json`, `application/…+json`). */
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * Refuses, before any route reads it, a JSON body the route's validator would
 * otherwise change without saying so: bytes that are not UTF-8 (decoded as
 * U+FFFD, so a lone surrogate sent as ED A0 80 would be stored as "���"), and
 * `__proto__` keys (zod drops them from records and passthrough objects, and
 * a plain assignment would take one as the object's prototype). Also refuses
 * what would be costly to parse into a schema, store and merge on every later
 * turn: an object with more than MAX_JSON_OBJECT_KEYS keys, an array with
 * more than MAX_JSON_ARRAY_ITEMS items (a million-item array made the schema
 * parse itself fail after seconds), a `params` larger than MAX_PARAMS_BYTES.
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
  const limits = c.var.limits;
  if (!couldBreakRawLimits(text, limits)) return next();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return next(); // the validator answers invalid_json
  }
  // The chat-completions endpoints take sampling fields at the top level: all but `messages` become the reply's params.
  const breach = findRawBodyBreach(value, limits, { topLevelParams: c.req.path.endsWith("/chat/completions") });
  if (breach) throw new ApiError(400, breach.message, breach.code, breach.param);
  return next();
});

/**
 * Whether a body's text could break what `findRawBodyBreach` checks; most bodies cannot, and are
 * not parsed twice.
 */
function couldBreakRawLimits(text: string, limits: InputLimits): boolean {
  // A key can only read `__proto__` if the text spells it out or escapes a letter of it (`\u…`).
  if (text.includes("__proto__") || text.includes("\\u")) return true;
  // Each distinct key of an object takes at least 5 characters (`"":0,`), each item of an array 2
  // (`0,`); a character is at most 3 bytes of UTF-8 (a surrogate pair is 2 characters for 4 bytes).
  const fewestItems = Math.min(limits.maxJsonArrayItems, limits.maxMessages);
  return (
    text.length >= 5 * limits.maxJsonObjectKeys || text.length >= 2 * fewestItems || text.length * 3 > limits.maxParamsBytes
  );
}

/**
 * The first of these in a parsed body, or null: an own `__proto__` key, an object with too many
 * keys, an array with too many items (the top-level `messages`: more than MAX_MESSAGES_PER_REQUEST),
 * a `params` too large. Deeper than any body may nest is not looked at (the schema check refuses it).
 */
export function findRawBodyBreach(
  value: unknown,
  limits: InputLimits,
  opts: { topLevelParams?: boolean } = {},
): LimitBreach | null {
  const stack: [unknown, string, number][] = [[value, "", 0]];
  while (stack.length > 0) {
    const [v, path, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null || depth > MAX_JSON_DEPTH) continue;
    if (Array.isArray(v)) {
      const tooMany =
        MESSAGE_LISTS.includes(path)
          ? tooManyMessages(v, limits, path)
          : v.length > limits.maxJsonArrayItems
            ? {
                param: path || null,
                code: "too_many_array_items",
                message: `${path || "The body"} has ${v.length} items; the limit is ${limits.maxJsonArrayItems} per array (MAX_JSON_ARRAY_ITEMS).`,
              }
            : null;
      if (tooMany) return tooMany;
      v.forEach((item, i) => stack.push([item, path ? `${path}.${i}` : String(i), depth + 1]));
      continue;
    }
    const keys = Object.keys(v);
    if (keys.length > limits.maxJsonObjectKeys) {
      return {
        param: path || null,
        code: "too_many_object_keys",
        message: `${path || "The body"} has ${keys.length} keys; the limit is ${limits.maxJsonObjectKeys} per object (MAX_JSON_OBJECT_KEYS).`,
      };
    }
    for (const key of keys) {
      const at = path ? `${path}.${key}` : key;
      if (key === "__proto__") return { param: at, code: "invalid_request", message: `${at}: \`__proto__\` cannot be a key.` };
      stack.push([(v as Record<string, unknown>)[key], at, depth + 1]);
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const { messages: _, ...allButMessages } = value as Record<string, unknown>;
  const sampling = opts.topLevelParams ? allButMessages : allButMessages.params;
  if (sampling === undefined || sampling === null) return null;
  const bytes = Buffer.byteLength(JSON.stringify(sampling));
  if (bytes <= limits.maxParamsBytes) return null;
  const what = opts.topLevelParams ? "The fields besides `messages`" : "params";
  return {
    param: opts.topLevelParams ? null : "params",
    code: "params_too_large",
    message: `${what} take ${bytes} bytes of JSON; the limit is ${limits.maxParamsBytes} (MAX_PARAMS_BYTES).`,
  };
}
