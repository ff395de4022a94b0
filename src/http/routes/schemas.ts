import { z } from "@hono/zod-openapi";

/** Pieces several route files declare the same way. */

export const errorSchema = z
  .object({
    error: z.object({
      message: z.string(),
      type: z.string(),
      param: z.string().nullable(),
      code: z.string().nullable(),
    }),
  })
  .openapi("Error");

export const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: errorSchema } },
});

// Examples (./examples.ts) are shown by /docs; the lint test checks them against their schemas.
export const jsonBody = <T extends z.ZodType>(schema: T, example?: unknown) => ({
  required: true,
  content: { "application/json": { schema, example } },
});

export const jsonResponse = <T extends z.ZodType>(schema: T, description: string, example?: unknown) => ({
  description,
  content: { "application/json": { schema, example } },
});

/** JSON, or with `stream: true` the reply's events: one status, two media types. */
export const jsonOrEventStreamResponse = <T extends z.ZodType>(
  schema: T,
  description: string,
  events: string,
  examples: { json?: unknown; events?: string } = {},
) => ({
  description,
  content: {
    "application/json": { schema, example: examples.json },
    "text/event-stream": { schema: z.string().openapi({ description: events }), example: examples.events },
  },
});

export const conversationIdParam = z.string().openapi({
  param: { name: "conversation_id", in: "path" },
  example: "conv_01jf3t8vvaf8s9k0d7k6x1s2y3",
});
export const messageIdParam = z.string().openapi({
  param: { name: "message_id", in: "path" },
  example: "msg_01jf3t8vvaf8s9k0d7k6x1s2y3",
});

// The openai SDK sends arrays as `include[]=…`; others send `include=…` (repeated or once).
const includeValues = z.union([z.string(), z.array(z.string())]).optional();
/** The `include` query of the item-listing routes (Responses and Conversations APIs). */
export const includeQuery = {
  include: includeValues.openapi({ description: "`message.output_text.logprobs`: a reply's logprobs on its output_text (when stored)." }),
  "include[]": includeValues.openapi({ description: "The same, as the openai SDK sends it." }),
};
export const includeOf = (q: { include?: string | string[] | undefined; "include[]"?: string | string[] | undefined }): string[] =>
  [q.include ?? [], q["include[]"] ?? []].flat();
