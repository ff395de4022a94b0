import { describe, expect, it } from "vitest";
import { useTestService } from "../support/service.ts";

/** Bodies that are within MAX_BODY_BYTES but costly to parse, store and merge on every later turn. */
const ctx = useTestService({ MAX_JSON_OBJECT_KEYS: 1000, MAX_PARAMS_BYTES: 64 * 1024 });

const manyKeys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 0]));

describe("object keys and params size", () => {
  it("refuses params with 280,000 keys before storing anything", async () => {
    const res = await ctx.api.post("/conversations", { title: "key bomb", params: manyKeys(280_000) });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: "invalid_request_error", code: "too_many_object_keys", param: "params" });
    expect(res.body.error.message).toContain("MAX_JSON_OBJECT_KEYS");
    expect(await ctx.service.sql`select 1 from conversations where title = 'key bomb'`).toHaveLength(0);
  });

  it("names the object with too many keys, wherever it is", async () => {
    const { body: conv } = await ctx.api.post("/conversations", {});
    const nested = await ctx.api.post(`/conversations/${conv.id}/messages`, {
      content: "hi",
      params: { response_format: { type: "json_schema", json_schema: { schema: { properties: manyKeys(1001) } } } },
    });
    expect(nested.status).toBe(400);
    expect(nested.body.error).toMatchObject({
      code: "too_many_object_keys",
      param: "params.response_format.json_schema.schema.properties",
    });
    const metadata = await ctx.api.patch(`/conversations/${conv.id}`, { metadata: manyKeys(5000) });
    expect(metadata.status).toBe(400);
    expect(metadata.body.error).toMatchObject({ code: "too_many_object_keys", param: "metadata" });
    const chat = await ctx.api.post("/chat/completions", {
      model: "parley-sim-1",
      messages: [{ role: "user", content: "hi" }],
      logit_bias: manyKeys(2000),
    });
    expect(chat.status).toBe(400);
    expect(chat.body.error).toMatchObject({ code: "too_many_object_keys", param: "logit_bias" });
  });

  it("refuses arrays with too many items before the schema parse (a million made it fail with a 500)", async () => {
    for (const item of [0, {}]) {
      const res = await ctx.api.post("/chat/completions", { model: "parley-sim-1", messages: Array(1_000_000).fill(item) });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: "too_many_messages", param: "messages" });
      expect(res.body.error.message).toContain("MAX_MESSAGES_PER_REQUEST");
    }
    const { body: conv } = await ctx.api.post("/conversations", {});
    const stop = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "hi", params: { stop: Array(5000).fill(0) } });
    expect(stop.status).toBe(400);
    expect(stop.body.error).toMatchObject({ code: "too_many_array_items", param: "params.stop" });
    expect(stop.body.error.message).toContain("MAX_JSON_ARRAY_ITEMS");
    expect(await ctx.service.sql`select 1 from messages where conversation_id = ${conv.id}`).toHaveLength(0);
  });

  it("refuses params larger than MAX_PARAMS_BYTES, and takes them up to it", async () => {
    const big = await ctx.api.post("/conversations", { params: { stop: ["x".repeat(70 * 1024)] } });
    expect(big.status).toBe(400);
    expect(big.body.error).toMatchObject({ code: "params_too_large", param: "params" });
    expect(big.body.error.message).toContain("MAX_PARAMS_BYTES");
    // Multi-byte text counts in bytes: 30,000 three-byte characters are 90,000 bytes.
    const wide = await ctx.api.post("/conversations", { params: { note: "€".repeat(30_000) } });
    expect(wide.status).toBe(400);
    expect(wide.body.error).toMatchObject({ code: "params_too_large" });

    const { body: conv } = await ctx.api.post("/conversations", {});
    const turn = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "hi", params: { note: "y".repeat(70 * 1024) } });
    expect(turn.status).toBe(400);
    expect(turn.body.error).toMatchObject({ code: "params_too_large", param: "params" });
    // On the chat-completions endpoints the sampling fields are the body's own, all but `messages`.
    for (const path of ["/chat/completions", `/conversations/${conv.id}/chat/completions`]) {
      const chat = await ctx.api.post(path, {
        model: "parley-sim-1",
        messages: [{ role: "user", content: "long messages are fine ".repeat(5000) }],
        metadata_of_mine: "y".repeat(70 * 1024),
      });
      expect(chat.status).toBe(400);
      expect(chat.body.error).toMatchObject({ code: "params_too_large", param: null });
    }
    expect(await ctx.service.sql`select 1 from messages where conversation_id = ${conv.id}`).toHaveLength(0);
  });

  it("accepts what stays within both limits", async () => {
    const res = await ctx.api.post("/conversations", {
      params: { temperature: 0.5, big: manyKeys(1000), list: Array(1000).fill(1), text: "z".repeat(50 * 1024) },
      metadata: { app: "limits" },
    });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body.params.big)).toHaveLength(1000);
    const { body: conv } = await ctx.api.post("/conversations", {});
    const turn = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "a long message. ".repeat(6_000), reply: false });
    expect(turn.status).toBe(201);
    const chat = await ctx.api.post("/chat/completions", {
      model: "parley-sim-1",
      messages: [{ role: "user", content: "a long question. ".repeat(6_000) }],
      max_tokens: 5,
    });
    expect(chat.status).toBe(200);
  });
});
