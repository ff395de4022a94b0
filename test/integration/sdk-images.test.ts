import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient } from "../support/http.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { startTestService, type TestService } from "../support/service.ts";

/*
 * image_url content parts through the openai SDK: https and data URLs reach the upstream as given (never
 * fetched), parts are stored as parts, and a message whose images are over MAX_IMAGE_BYTES_PER_MESSAGE
 * (data URLs counted decoded, summed over the message) is refused with a 413 naming the field.
 */

const IMAGE_LIMIT = 2048;

let upstream: FakeUpstream;
let service: TestService;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  service = await startTestService({
    UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, api_key: "sk-upstream", models: ["fake-model"] }],
    MAX_IMAGE_BYTES_PER_MESSAGE: IMAGE_LIMIT,
  });
  api = apiClient(`${service.url}/v1`);
});
afterAll(async () => {
  await service?.stop();
  await upstream?.close();
});
beforeEach(() => upstream.reset());

const openai = (baseURL = `${service.url}/v1`) => new OpenAI({ baseURL, apiKey: TEST_API_KEY, maxRetries: 0 });
const dataUrl = (bytes: number) => `data:image/png;base64,${Buffer.alloc(bytes, 7).toString("base64")}`;

const question: OpenAI.ChatCompletionContentPart[] = [
  { type: "text", text: "What is in these pictures?" },
  { type: "image_url", image_url: { url: "https://example.com/lisbon.jpg", detail: "low" } },
  { type: "image_url", image_url: { url: dataUrl(100) } },
];

describe("image parts", () => {
  it("reach the upstream as given on the stateless endpoint", async () => {
    const completion = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: question }] });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(upstream.requests[0]?.body.messages).toEqual([{ role: "user", content: question }]);
    expect(upstream.requests[0]?.raw).toContain(JSON.stringify(question));
  });

  it("are stored as parts on the bound endpoint and sent upstream as given in later turns; text-only history stays a string", async () => {
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const bound = openai(`${service.url}/v1/conversations/${conv.id}`);
    await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: question }] });
    await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "And the second?" }] });

    expect(upstream.requests[0]?.body.messages).toEqual([{ role: "user", content: question }]);
    expect(upstream.requests[1]?.body.messages).toEqual([
      { role: "user", content: question },
      { role: "assistant", content: expect.any(String) },
      { role: "user", content: "And the second?" },
    ]);
    const stored = (await api.get(`/conversations/${conv.id}/messages`)).body.data as any[];
    expect(stored[0]?.content_parts).toEqual(question);
    expect(stored[2]?.content).toBe("And the second?");
  });

  it("over the limit per message (data URLs decoded, summed) get a 413 naming the field, on both endpoints", async () => {
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const half = IMAGE_LIMIT / 2 + 1;
    const tooMuch: OpenAI.ChatCompletionContentPart[] = [
      { type: "text", text: "Two halves and a bit" },
      { type: "image_url", image_url: { url: dataUrl(half) } },
      { type: "image_url", image_url: { url: dataUrl(half) } },
    ];
    for (const client of [openai(), openai(`${service.url}/v1/conversations/${conv.id}`)]) {
      const refused = client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: tooMuch }] });
      await expect(refused).rejects.toMatchObject({ status: 413, code: "image_too_large", param: expect.stringMatching(/^messages\W0\W+content$/) });
    }
    // One of them alone is within the limit.
    await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: tooMuch.slice(0, 2) }] });
    expect(upstream.requests).toHaveLength(1);
  });

  it("refuses a part of an unknown type with a 400 naming the field", async () => {
    const refused = openai().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "AAAA", format: "wav" } }] }],
    });
    await expect(refused).rejects.toMatchObject({ status: 400, param: expect.stringMatching(/^messages/) });
    expect(upstream.requests).toHaveLength(0);
  });
});
