import OpenAI from "openai";
import Together from "together-ai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { fakeTokens, startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient } from "../support/http.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { startTestService, type TestService } from "../support/service.ts";

let upstream: FakeUpstream;
let service: TestService;
let openai: OpenAI;
let together: Together;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  service = await startTestService({
    UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, api_key: "sk-upstream", models: ["fake-model"] }],
  });
  // Only the base URL and key change: this is the code an app already has.
  openai = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: TEST_API_KEY, maxRetries: 0 });
  together = new Together({ baseURL: `${service.url}/v1`, apiKey: TEST_API_KEY, maxRetries: 0 });
});
afterAll(async () => {
  await service?.stop();
  await upstream?.close();
});
beforeEach(() => upstream.reset());

describe("the OpenAI SDK against /v1/chat/completions", () => {
  it("answers a single query with a chat.completion", async () => {
    const completion = await openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "What is Parley?" }],
    });
    expect(completion.object).toBe("chat.completion");
    expect(completion.model).toBe("fake-model");
    expect(completion.choices[0]?.message).toMatchObject({ role: "assistant", content: "Reply to: What is Parley?" });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]?.body.stream).toBe(false);
  });

  it("passes a system prompt, a multi-turn history and every sampling field to the upstream", async () => {
    const messages = [
      { role: "system" as const, content: "You are a pirate." },
      { role: "user" as const, content: "Hi" },
      { role: "assistant" as const, content: "Arr!" },
      { role: "user" as const, content: "Where is the treasure?" },
    ];
    const sampling = {
      max_tokens: 50,
      temperature: 0.5,
      top_p: 0.9,
      stop: ["\n\n"],
      seed: 42,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      // Not in OpenAI's types; Together-style fields pass through all the same.
      top_k: 40,
      repetition_penalty: 1.05,
      min_p: 0.05,
    };
    const completion = await openai.chat.completions.create({
      model: "fake-model",
      messages,
      ...sampling,
    });
    expect(completion.choices[0]?.message.content).toBe("Reply to: Where is the treasure?");
    expect(upstream.requests[0]?.body).toEqual({
      model: "fake-model",
      messages,
      ...sampling,
      stream: false,
    });
  });

  it("streams chunk by chunk, the last carrying finish_reason and usage, and reaches the upstream streaming", async () => {
    const stream = await openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Tell me a story" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe("Reply to: Tell me a story");
    expect(chunks.filter((c) => c.choices[0]?.delta.content)).toHaveLength(fakeTokens(text).length);
    expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant");
    const last = chunks.at(-1)!;
    expect(last.choices[0]?.finish_reason).toBe("stop");
    expect(last.usage?.completion_tokens).toBe(fakeTokens(text).length);
    expect(chunks.slice(0, -1).every((c) => c.choices[0]?.finish_reason === null)).toBe(true);
    expect(upstream.requests[0]?.body.stream).toBe(true);
  });

  it("serves 20 calls in parallel from one client", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? openai.chat.completions
              .create({ model: "fake-model", messages: [{ role: "user", content: `parallel ${i}` }] })
              .then((c) => c.choices[0]?.message.content)
          : openai.chat.completions
              .create({ model: "fake-model", messages: [{ role: "user", content: `parallel ${i}` }], stream: true })
              .then(async (s) => {
                let text = "";
                for await (const c of s) text += c.choices[0]?.delta.content ?? "";
                return text;
              }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => `Reply to: parallel ${i}`));
    expect(upstream.requests).toHaveLength(20);
  });

  it("lists the models", async () => {
    const models = [];
    for await (const m of openai.models.list()) models.push(m.id);
    expect(models).toEqual(expect.arrayContaining(["fake-model", "parley-sim-1"]));
  });

  it("raises the SDK's typed errors: unknown model, invalid body, unsupported field, unanswered tool call, upstream failure", async () => {
    const unknown = openai.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] });
    await expect(unknown).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(unknown).rejects.toMatchObject({ status: 404, code: "model_not_found" });

    const invalid = openai.chat.completions.create({ model: "fake-model", messages: [] });
    await expect(invalid).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(invalid).rejects.toMatchObject({ param: "messages" });

    const badTemperature = openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "x" }],
      temperature: 7,
    });
    await expect(badTemperature).rejects.toMatchObject({ status: 400, param: "temperature" });

    // The legacy function-calling fields are refused by name: their replies stream as `function_call`, not relayed.
    const functions = openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "x" }],
      functions: [{ name: "f", parameters: {} }],
    });
    await expect(functions).rejects.toMatchObject({ status: 400, param: "functions" });

    const badTool = openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "x" }],
      tools: [{ type: "function", function: { name: "not a name!", parameters: {} } }],
    });
    await expect(badTool).rejects.toMatchObject({ status: 400, param: "tools.0.function.name" });

    const unansweredCall = openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "tool", content: "x", tool_call_id: "t" }],
    });
    await expect(unansweredCall).rejects.toMatchObject({ status: 400, param: "messages.0.tool_call_id" });
    expect(upstream.requests).toHaveLength(0);

    upstream.setBehaviour({ kind: "status", status: 500, body: { error: { message: "upstream exploded" } } });
    const failing = openai.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "x" }] });
    await expect(failing).rejects.toBeInstanceOf(OpenAI.InternalServerError);
    await expect(failing).rejects.toMatchObject({ status: 502, code: "upstream_error" });
    const failingStream = openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    await expect(failingStream).rejects.toMatchObject({ status: 502 });
  });

  it("raises an error mid-stream when the upstream drops after some tokens", async () => {
    upstream.setBehaviour({ kind: "drop", afterTokens: 2 });
    const stream = await openai.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "drop after two words please" }],
      stream: true,
    });
    let text = "";
    const reading = (async () => {
      for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    })();
    await expect(reading).rejects.toBeInstanceOf(OpenAI.APIError);
    expect(text).toBe(fakeTokens("Reply to: drop after two words please").slice(0, 2).join(""));
  });

  it("accepts text content parts and the developer role, and sends them on as given", async () => {
    const completion = await openai.chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "developer", content: "Be terse." },
        { role: "user", content: [{ type: "text", text: "part one, " }, { type: "text", text: "part two" }] },
      ],
    });
    // The fake answers to parts with their JSON text.
    const parts = [{ type: "text", text: "part one, " }, { type: "text", text: "part two" }];
    expect(completion.choices[0]?.message.content).toBe(`Reply to: ${JSON.stringify(parts)}`);
    expect(upstream.requests[0]?.body.messages).toEqual([
      { role: "developer", content: "Be terse." },
      { role: "user", content: [{ type: "text", text: "part one, " }, { type: "text", text: "part two" }] },
    ]);
  });
});

describe("the Together SDK against /v1/chat/completions", () => {
  it("answers, streams and raises typed errors", async () => {
    const completion = await together.chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hello Together" },
      ],
      top_k: 50,
      repetition_penalty: 1.1,
    });
    expect(completion.choices[0]?.message?.content).toBe("Reply to: Hello Together");
    expect(upstream.requests[0]?.body).toMatchObject({ top_k: 50, repetition_penalty: 1.1, stream: false });

    const stream = await together.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Stream with Together" }],
      stream: true,
    });
    let text = "";
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe("Reply to: Stream with Together");
    expect(finish).toBe("stop");
    expect(upstream.requests[1]?.body.stream).toBe(true);

    await expect(
      together.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    ).rejects.toBeInstanceOf(Together.NotFoundError);
    await expect(
      together.chat.completions.create({ model: "fake-model", messages: [{ role: "robot" as "user", content: "x" }] }),
    ).rejects.toBeInstanceOf(Together.BadRequestError);
  });
});

describe("the conversation-bound endpoint", () => {
  it("prepends the stored system prompt and history, and stores the new messages and replies over 3 turns", async () => {
    const api = apiClient(`${service.url}/v1`);
    const { body: conv } = await api.post("/conversations", { model: "fake-model", system: "You are a travel guide." });
    // The only change to existing SDK code: the base URL.
    const bound = new OpenAI({ baseURL: `${service.url}/v1/conversations/${conv.id}`, apiKey: TEST_API_KEY, maxRetries: 0 });

    const replies: string[] = [];
    for (const [turn, question] of ["Lisbon?", "Porto?", "Faro?"].entries()) {
      if (turn === 1) {
        const stream = await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: question }], stream: true });
        let text = "";
        for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
        replies.push(text);
      } else {
        const c = await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: question }] });
        expect(c.id).toMatch(/^msg_/);
        replies.push(c.choices[0]!.message.content!);
      }
    }
    expect(replies).toEqual(["Reply to: Lisbon?", "Reply to: Porto?", "Reply to: Faro?"]);
    expect(upstream.requests.map((r) => r.body.stream)).toEqual([false, true, false]);
    expect(upstream.requests[2]?.body.messages).toEqual([
      { role: "system", content: "You are a travel guide." },
      { role: "user", content: "Lisbon?" },
      { role: "assistant", content: "Reply to: Lisbon?" },
      { role: "user", content: "Porto?" },
      { role: "assistant", content: "Reply to: Porto?" },
      { role: "user", content: "Faro?" },
    ]);

    const history = await api.get(`/conversations/${conv.id}/messages`);
    expect(history.body.data.map((m: any) => [m.seq, m.role, m.content, m.status])).toEqual([
      [1, "user", "Lisbon?", "completed"],
      [2, "assistant", "Reply to: Lisbon?", "completed"],
      [3, "user", "Porto?", "completed"],
      [4, "assistant", "Reply to: Porto?", "completed"],
      [5, "user", "Faro?", "completed"],
      [6, "assistant", "Reply to: Faro?", "completed"],
    ]);
  });

  it("refuses a last message that is not the user's, an unknown conversation, and a busy one", async () => {
    const api = apiClient(`${service.url}/v1`);
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const bound = new OpenAI({ baseURL: `${service.url}/v1/conversations/${conv.id}`, apiKey: TEST_API_KEY, maxRetries: 0 });
    await expect(
      bound.chat.completions.create({ model: "fake-model", messages: [{ role: "assistant", content: "x" }] }),
    ).rejects.toMatchObject({ status: 400, param: "messages" });

    const missing = new OpenAI({ baseURL: `${service.url}/v1/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3`, apiKey: TEST_API_KEY, maxRetries: 0 });
    await expect(
      missing.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "x" }] }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    upstream.setBehaviour({ kind: "ok", ttftMs: 1000 });
    const first = bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "slow" }] });
    await new Promise((r) => setTimeout(r, 200));
    await expect(
      bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "too soon" }] }),
    ).rejects.toBeInstanceOf(OpenAI.ConflictError);
    expect((await first).choices[0]?.message.content).toBe("Reply to: slow");
    const [row] = await service.sql`select count(*)::int as n from messages where conversation_id = ${conv.id}`;
    expect(row?.n).toBe(2);
  });
});
