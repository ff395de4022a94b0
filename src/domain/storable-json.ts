import { z } from "@hono/zod-openapi";

/**
 * What Postgres stores and gives back unchanged, as schemas. Apart from
 * resources.ts so the message model (chat-message.ts), which resources.ts
 * presents, can use them without an import cycle.
 */

/**
 * Text as Postgres can store it and give back unchanged: no NUL characters,
 * and well-formed Unicode (a lone surrogate would be stored as U+FFFD).
 */
export const storableText = () =>
  z
    .string()
    .refine((s) => !s.includes("\u0000"), { message: "must not contain NUL (\\u0000) characters" })
    .refine((s) => s.isWellFormed(), { message: "must be well-formed Unicode (no lone surrogates)" });

/**
 * Whether a JSON value is stored as given: every string (keys too) storable
 * text, and every number finite (JSON's 1e309 parses as Infinity, which json
 * would get as null). Walks with its own stack, not recursion: a body may nest
 * deeper than the call stack.
 */
export function isStorableJson(value: unknown): boolean {
  const storable = (s: string) => !s.includes("\u0000") && s.isWellFormed();
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return false;
    } else if (typeof v === "string") {
      if (!storable(v)) return false;
    } else if (Array.isArray(v)) {
      stack.push(...v);
    } else if (typeof v === "object" && v !== null) {
      for (const [k, item] of Object.entries(v)) {
        if (!storable(k)) return false;
        stack.push(item);
      }
    }
  }
  return true;
}
