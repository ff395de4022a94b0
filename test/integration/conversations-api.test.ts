import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * OpenAI's Conversations API (client.conversations.*, client.conversations.items.*) on Parley's own
 * conversations, with the real openai SDK: items are views of the stored messages, so a conversation made
 * either way is usable through both APIs and chat completions, and deleting an item changes what later
 * turns send upstream.
 */

const ctx = useServiceWithFakeUpstream({ overrides: { DEFAULT_MODEL: "fake-model" } });
const openai = () => openaiAt(`${ctx.service.url}/v1`);

const PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/** A user message with text and an image, a function call and its output. */
const weatherItems: OpenAI.Responses.ResponseInputItem[] = [
  {
    type: "message",
    role: "user",
    content: [
      { type: "input_text", text: "What is the weather here?" },
      { type: "input_image", image_url: PNG, detail: "low" },
    ],
  },
  { type: "function_call", call_id: "call_w", name: "get_weather", arguments: '{"city":"Lisbon"}' },
  { type: "function_call_output", call_id: "call_w", output: "22C and sunny" },
];

/**
 * 8 items in 5 rows: a user message; an assistant row with reasoning, text and two calls; the two outputs;
 * a user message.
 */
const eightItems: OpenAI.Responses.ResponseInputItem[] = [
  { role: "user", content: "Weather in Lisbon and Porto?" },
  { type: "reasoning", id: "rs_given", summary: [{ type: "summary_text", text: "Two cities: two calls." }] },
  { type: "message", role: "assistant", content: [{ type: "output_text", text: "Let me look.", annotations: [] }] } as never,
  { type: "function_call", call_id: "call_a", name: "get_weather", arguments: '{"city":"Lisbon"}' },
  { type: "function_call", call_id: "call_b", name: "get_weather", arguments: '{"city":"Porto"}' },
  { type: "function_call_output", call_id: "call_a", output: "22C" },
  { type: "function_call_output", call_id: "call_b", output: "18C" },
  { role: "user", content: "Thanks. Which is warmer?" },
];

/** The stored rows' ids, oldest first. */
async function rowIds(conversationId: string): Promise<string[]> {
  const rows = await ctx.service.sql`select id from messages where conversation_id = ${conversationId} order by seq`;
  return rows.map((r) => r.id as string);
}

const suffix = (messageId: string) => messageId.slice("msg_".length);

/** Each row's running total is the tokens of every row up to it that counts in history (the invariant history fitting reads). */
async function expectRunningTotalsConsistent(conversationId: string) {
  const rows = await ctx.service.sql`
    select seq, tokens, history_tokens, status, role, content from messages where conversation_id = ${conversationId} order by seq`;
  let running = 0;
  for (const r of rows) {
    const counted = r.status !== "failed" && (r.role !== "assistant" || r.status === "completed" || (r.status === "cancelled" && r.content !== ""));
    running += counted ? Number(r.tokens) : 0;
    expect({ seq: r.seq, history_tokens: Number(r.history_tokens) }).toEqual({ seq: r.seq, history_tokens: running });
  }
  const [conv] = await ctx.service.sql`select message_count from conversations where id = ${conversationId}`;
  expect(conv!.message_count).toBe(rows.length);
}

/** Parley's own fields on a conversation the SDK types as OpenAI's. */
const messageCount = (conversation: OpenAI.Conversations.Conversation): number => (conversation as unknown as { message_count: number }).message_count;

async function all<T>(page: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of page) out.push(item);
  return out;
}

describe("conversations through the Conversations API", () => {
  it("creates from items (text and image, a call and its output), retrieves, updates metadata and deletes", async () => {
    const client = openai();
    const conv = await client.conversations.create({ items: weatherItems, metadata: { app: "weather" } });
    expect(conv).toMatchObject({ object: "conversation", metadata: { app: "weather" } });
    expect(conv.id).toMatch(/^conv_/);
    expect(Math.abs(conv.created_at - Date.now() / 1000)).toBeLessThan(60);
    // Parley's own fields are there too.
    expect(conv).toMatchObject({ model: "fake-model", message_count: 3 });

    expect(await client.conversations.retrieve(conv.id)).toMatchObject({ id: conv.id, object: "conversation", metadata: { app: "weather" } });
    const updated = await client.conversations.update(conv.id, { metadata: { app: "weather", v: "2" } });
    expect(updated).toMatchObject({ id: conv.id, object: "conversation", metadata: { app: "weather", v: "2" } });

    // The native API sees the same history: parts kept, the call on an assistant message, the output a tool message.
    const native = await ctx.api.get(`/conversations/${conv.id}/messages`);
    expect(native.body.data.map((m: { role: string }) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(native.body.data[0].content_parts).toEqual([
      { type: "text", text: "What is the weather here?" },
      { type: "image_url", image_url: { url: PNG, detail: "low" } },
    ]);
    expect(native.body.data[1].tool_calls).toEqual([{ id: "call_w", type: "function", function: { name: "get_weather", arguments: '{"city":"Lisbon"}' } }]);
    expect(native.body.data[2]).toMatchObject({ tool_call_id: "call_w", content: "22C and sunny" });

    // ...and so does a chat completion bound to it: the history goes upstream before the new message.
    const bound = openaiAt(`${ctx.service.url}/v1/conversations/${conv.id}`);
    const completion = await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "And tomorrow?" }] });
    expect(completion.choices[0]!.message.content).toBe("Reply to: And tomorrow?");
    const sent = ctx.upstream.requests.at(-1)!.body.messages;
    expect(sent.map((m: { role: string }) => m.role)).toEqual(["user", "assistant", "tool", "user"]);
    expect(sent[0].content[1]).toEqual({ type: "image_url", image_url: { url: PNG, detail: "low" } });
    expect(sent[1]).toMatchObject({ content: null, tool_calls: [{ id: "call_w", function: { name: "get_weather" } }] });
    expect(sent[2]).toEqual({ role: "tool", content: "22C and sunny", tool_call_id: "call_w" });

    expect(await client.conversations.delete(conv.id)).toEqual({ id: conv.id, object: "conversation.deleted", deleted: true });
    const gone = await client.conversations.retrieve(conv.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("creates with no body at all, as client.conversations.create() does", async () => {
    const conv = await openai().conversations.create();
    expect(conv).toMatchObject({ object: "conversation", metadata: {}, message_count: 0 });
    expect((await openai().conversations.items.list(conv.id)).data).toEqual([]);
  });
});

describe("items: a view of the stored messages", () => {
  it("lists a conversation made natively as items: reasoning, tool calls and outputs, newest first by default", async () => {
    ctx.upstream.setBehaviour({
      kind: "script",
      pick: ({ body }) =>
        body.messages.at(-1).role === "tool"
          ? { kind: "ok", text: "It is warm." }
          : { kind: "ok", reasoning: ["Need ", "the weather."], toolCalls: [{ id: "call_n", name: "get_weather", arguments: '{"city":"Faro"}' }] },
    });
    const created = await ctx.api.post("/conversations", { model: "fake-model", params: { tools: [{ type: "function", function: { name: "get_weather", parameters: {} } }] } });
    const id = created.body.id as string;
    expect((await ctx.api.post(`/conversations/${id}/messages`, { content: "Weather in Faro?" })).status).toBe(201);
    expect((await ctx.api.post(`/conversations/${id}/messages`, { role: "tool", tool_call_id: "call_n", content: "30C" })).status).toBe(201);
    const [user, calling, tool, answer] = await rowIds(id);

    const page = await openai().conversations.items.list(id);
    expect(page.data.map((i) => i.id)).toEqual([answer, tool, `fc_${suffix(calling!)}_0`, `rs_${suffix(calling!)}`, user]);
    expect(page.has_more).toBe(false);
    const asc = (await openai().conversations.items.list(id, { order: "asc" })).data;
    expect(asc[0]).toEqual({ id: user, type: "message", status: "completed", role: "user", content: [{ type: "input_text", text: "Weather in Faro?" }] });
    expect(asc[1]).toMatchObject({ type: "reasoning", content: [{ type: "reasoning_text", text: "Need the weather." }] });
    expect(asc[2]).toMatchObject({ type: "function_call", call_id: "call_n", name: "get_weather", arguments: '{"city":"Faro"}', status: "completed" });
    expect(asc[3]).toMatchObject({ id: tool, type: "function_call_output", call_id: "call_n", output: "30C" });
    expect(asc[4]).toMatchObject({ id: answer, type: "message", role: "assistant", content: [{ type: "output_text", text: "It is warm." }] });
  });

  it("pages over items, one message row being several: asc, desc, after a sub-item, exact has_more", async () => {
    const client = openai();
    const conv = await client.conversations.create({ items: eightItems });
    const [u1, a2, t3, t4, u5] = await rowIds(conv.id);
    const s = suffix(a2!);
    const ascending = [u1, `rs_${s}`, a2, `fc_${s}_0`, `fc_${s}_1`, t3, t4, u5];

    const ids = (p: { data: { id?: string | null }[] }) => p.data.map((i) => i.id);
    const first = await client.conversations.items.list(conv.id, { order: "asc", limit: 3 });
    expect([ids(first), first.has_more, first.last_id]).toEqual([ascending.slice(0, 3), true, a2]);
    const raw = await ctx.api.get(`/conversations/${conv.id}/items?order=asc&limit=3`);
    expect(raw.body).toMatchObject({ object: "list", first_id: u1, last_id: a2, has_more: true });
    const second = await client.conversations.items.list(conv.id, { order: "asc", limit: 3, after: a2 });
    expect([ids(second), second.has_more]).toEqual([ascending.slice(3, 6), true]);
    // Exactly the rest: no more past it.
    const rest = await client.conversations.items.list(conv.id, { order: "asc", limit: 3, after: `fc_${s}_1` });
    expect([ids(rest), rest.has_more]).toEqual([ascending.slice(5), false]);
    const within = await client.conversations.items.list(conv.id, { order: "asc", limit: 2, after: `rs_${s}` });
    expect([ids(within), within.has_more]).toEqual([[a2, `fc_${s}_0`], true]);

    const descending = [...ascending].reverse();
    expect(ids(await client.conversations.items.list(conv.id))).toEqual(descending);
    const back = await client.conversations.items.list(conv.id, { limit: 2, after: `fc_${s}_1` });
    expect([ids(back), back.has_more]).toEqual([[`fc_${s}_0`, a2], true]);
    const end = await client.conversations.items.list(conv.id, { limit: 2, after: a2 });
    expect([ids(end), end.has_more]).toEqual([[`rs_${s}`, u1], false]);

    // The SDK's auto-pagination walks every page.
    expect((await all(client.conversations.items.list(conv.id, { order: "asc", limit: 3 }))).map((i) => i.id)).toEqual(ascending);
    expect((await all(client.conversations.items.list(conv.id, { limit: 1 }))).map((i) => i.id)).toEqual(descending);

    // An item id that is not in the conversation (or not an item at all) as the cursor: 404 naming `after`.
    for (const after of [`fc_${s}_2`, "msg_01jf3t8vvaf8s9k0d7k6x1s2y3", "nonsense"]) {
      const res = await ctx.api.get(`/conversations/${conv.id}/items?after=${after}`);
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ type: "invalid_request_error", param: "after", code: "not_found" });
    }
    const badLimit = await ctx.api.get(`/conversations/${conv.id}/items?limit=101`);
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.error.param).toBe("limit");
  });

  it("retrieves and deletes items (reasoning, a call, an assistant's text, whole rows); later turns send what remains", async () => {
    const client = openai();
    const conv = await client.conversations.create({ items: eightItems });
    const [u1, a2, t3, t4, u5] = await rowIds(conv.id);
    const s = suffix(a2!);
    const items = client.conversations.items;

    expect(await items.retrieve(`fc_${s}_1`, { conversation_id: conv.id })).toEqual({
      id: `fc_${s}_1`,
      type: "function_call",
      call_id: "call_b",
      name: "get_weather",
      arguments: '{"city":"Porto"}',
      status: "completed",
    });
    expect(await items.retrieve(`rs_${s}`, { conversation_id: conv.id })).toMatchObject({
      type: "reasoning",
      content: [{ type: "reasoning_text", text: "Two cities: two calls." }],
    });
    const missing = await items.retrieve(`fc_${s}_7`, { conversation_id: conv.id }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({ code: "not_found", type: "invalid_request_error" });

    const afterReasoning = await items.delete(`rs_${s}`, { conversation_id: conv.id });
    expect(afterReasoning).toMatchObject({ id: conv.id, object: "conversation", message_count: 5 });
    const afterCall = await items.delete(`fc_${s}_1`, { conversation_id: conv.id });
    expect(messageCount(afterCall)).toBe(5);
    await expectRunningTotalsConsistent(conv.id);
    // The assistant's text goes; its remaining call keeps the row.
    await items.delete(a2!, { conversation_id: conv.id });
    // Whole rows: the output answering the deleted call, and the first user message.
    await items.delete(t4!, { conversation_id: conv.id });
    const afterRows = await items.delete(u1!, { conversation_id: conv.id });
    expect(messageCount(afterRows)).toBe(3);
    await expectRunningTotalsConsistent(conv.id);

    const [row] = await ctx.service.sql`select content, reasoning, tool_calls from messages where id = ${a2!}`;
    expect(row).toEqual({ content: "", reasoning: null, tool_calls: [{ id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Lisbon"}' } }] });
    expect((await all(items.list(conv.id, { order: "asc" }))).map((i) => i.id)).toEqual([`fc_${s}_0`, t3, u5]);
    const seqs = await ctx.service.sql`select seq from messages where conversation_id = ${conv.id} order by seq`;
    expect(seqs.map((r) => r.seq)).toEqual([2, 3, 5]); // the gaps are kept

    // A native turn sends exactly what remains, and its rows continue the running totals.
    const turn = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "So?" });
    expect(turn.status).toBe(201);
    expect(ctx.upstream.requests.at(-1)!.body.messages).toEqual([
      { role: "assistant", content: null, tool_calls: [{ id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Lisbon"}' } }] },
      { role: "tool", content: "22C", tool_call_id: "call_a" },
      { role: "user", content: "Thanks. Which is warmer?" },
      { role: "user", content: "So?" },
    ]);
    await expectRunningTotalsConsistent(conv.id);

    // Deleting the last call of a row with no text leaves nothing: the row goes.
    await items.delete(`fc_${s}_0`, { conversation_id: conv.id });
    expect(await rowIds(conv.id)).not.toContain(a2);
    await expectRunningTotalsConsistent(conv.id);
    const again = await items.delete(`fc_${s}_0`, { conversation_id: conv.id }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("refuses to delete a reply in flight (400) and anything while one is in flight (409)", async () => {
    ctx.upstream.setBehaviour({ kind: "hang" });
    const created = await ctx.api.post("/conversations", { model: "fake-model" });
    const id = created.body.id as string;
    const queued = await ctx.api.post(`/conversations/${id}/messages`, { content: "Hello?", wait: false });
    expect(queued.status).toBe(202);
    const replyId = queued.body.reply.id as string;

    const ofReply = await ctx.api.delete(`/conversations/${id}/items/${replyId}`);
    expect(ofReply.status).toBe(400);
    expect(ofReply.body.error).toMatchObject({ code: "reply_in_flight", type: "invalid_request_error" });
    const other = await ctx.api.delete(`/conversations/${id}/items/${queued.body.message.id}`);
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ code: "conversation_busy" });
    // Adding items is refused the same way.
    const add = await ctx.api.post(`/conversations/${id}/items`, { items: [{ role: "user", content: "more" }] });
    expect(add.status).toBe(409);

    expect((await ctx.api.post(`/conversations/${id}/messages/${replyId}/cancel`)).status).toBe(200);
    expect((await ctx.api.delete(`/conversations/${id}/items/${replyId}`)).status).toBe(200);
  });
});

describe("adding items", () => {
  it("appends items as completed messages with no reply, answering the items added", async () => {
    const client = openai();
    const conv = await client.conversations.create({ items: [{ role: "user", content: "Weather?" }] });
    const added = await client.conversations.items.create(conv.id, {
      items: [
        { type: "function_call", call_id: "call_x", name: "get_weather", arguments: "{}" },
        { type: "function_call_output", call_id: "call_x", output: [{ type: "input_text", text: "sunny" }] },
      ],
    });
    const [, assistant, tool] = await rowIds(conv.id);
    expect(added).toEqual({
      object: "list",
      data: [
        { id: `fc_${suffix(assistant!)}_0`, type: "function_call", call_id: "call_x", name: "get_weather", arguments: "{}", status: "completed" },
        { id: tool, type: "function_call_output", call_id: "call_x", output: [{ type: "input_text", text: "sunny" }], status: "completed" },
      ],
      first_id: `fc_${suffix(assistant!)}_0`,
      last_id: tool,
      has_more: false,
    });
    expect(ctx.upstream.requests).toHaveLength(0); // no reply
    expect(messageCount(await client.conversations.retrieve(conv.id))).toBe(3);
    await expectRunningTotalsConsistent(conv.id);

    // A repeat with the same Idempotency-Key answers the same items and stores nothing more.
    const body = { items: [{ role: "user", content: "once" }] };
    const key = { "idempotency-key": `items-${conv.id}` };
    const once = await ctx.api.post(`/conversations/${conv.id}/items`, body, key);
    const twice = await ctx.api.post(`/conversations/${conv.id}/items`, body, key);
    expect(once.status).toBe(200);
    expect(twice.body).toEqual(once.body);
    expect(await rowIds(conv.id)).toHaveLength(4);
  });

  it("answers bad input with a 4xx in the error shape, naming the field", async () => {
    const conv = await openai().conversations.create({ items: [{ role: "user", content: "Hi" }] });
    const cases: { path: string; body: unknown; status: number; param: string | null; code?: string }[] = [
      { path: `/conversations/${conv.id}/items`, body: { items: [{ type: "web_search_call", id: "ws_1" }] }, status: 400, param: "items.0.type" },
      { path: "/conversations", body: { items: [{ role: "user", content: "a" }, { type: "shell_call" }] }, status: 400, param: "items.1.type" },
      {
        path: `/conversations/${conv.id}/items`,
        body: { items: Array.from({ length: 21 }, (_, i) => ({ role: "user", content: `m${i}` })) },
        status: 400,
        param: "items",
      },
      { path: "/conversations", body: { items: Array.from({ length: 21 }, () => ({ role: "user", content: "m" })) }, status: 400, param: "items" },
      { path: `/conversations/${conv.id}/items`, body: { items: [] }, status: 400, param: "items" },
      {
        path: `/conversations/${conv.id}/items`,
        body: { items: [{ role: "user", content: "x" }, { type: "function_call_output", call_id: "call_nobody", output: "?" }] },
        status: 400,
        param: "items.1.call_id",
      },
      {
        path: "/conversations",
        body: { items: [{ type: "function_call_output", call_id: "call_nobody", output: "?" }] },
        status: 400,
        param: "items.0.call_id",
      },
      { path: "/conversations", body: { items: [{ role: "user", content: "a" }], messages: [{ role: "user", content: "a" }] }, status: 400, param: "items" },
      { path: "/conversations", body: { items: [{ type: "item_reference", id: "msg_01jf3t8vvaf8s9k0d7k6x1s2y3" }] }, status: 400, param: "items.0", code: "item_reference_not_supported" },
      { path: `/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3/items`, body: { items: [{ role: "user", content: "x" }] }, status: 404, param: null, code: "not_found" },
    ];
    for (const c of cases) {
      const res = await ctx.api.post(c.path, c.body);
      expect({ path: c.path, status: res.status, param: res.body.error?.param }).toEqual({ path: c.path, status: c.status, param: c.param });
      expect(res.body.error).toEqual({ message: expect.any(String), type: "invalid_request_error", param: c.param, code: c.code ?? expect.any(String) });
    }
    expect(await rowIds(conv.id)).toHaveLength(1); // nothing refused was stored

    for (const path of [`/conversations/${conv.id}/items/fc_nothing_0`, `/conversations/${conv.id}/items/msg_01jf3t8vvaf8s9k0d7k6x1s2y3`]) {
      for (const res of [await ctx.api.get(path), await ctx.api.delete(path)]) {
        expect(res.status).toBe(404);
        expect(res.body.error).toMatchObject({ type: "invalid_request_error", code: "not_found" });
      }
    }
    const otherTenantsOrNone = await ctx.api.get(`/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3/items`);
    expect(otherTenantsOrNone.status).toBe(404);
  });
});

describe("deleting the newest item", () => {
  // "The message before" a turn is the newest row with a lower seq, not the row at seq - 1: a deleted newest item leaves nothing there.
  it("keeps the running totals of the next turn right", async () => {
    const client = openai();
    const conv = await client.conversations.create({ items: [{ role: "user", content: "First question, quite long." }, { role: "user", content: "Oops" }] });
    const [, oops] = await rowIds(conv.id);
    await client.conversations.items.delete(oops!, { conversation_id: conv.id });
    expect((await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "Second" })).status).toBe(201);
    await expectRunningTotalsConsistent(conv.id);
  });
});
