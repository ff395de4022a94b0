import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { boundOpenAI, openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * image_url content parts through the openai SDK: https and data URLs reach the upstream as given (never
 * fetched), parts are stored as parts, and a message whose images are over MAX_IMAGE_BYTES_PER_MESSAGE
 * (data URLs counted decoded, summed over the message) is refused with a 413 naming the field.
 */

const IMAGE_LIMIT = 2048;

const ctx = useServiceWithFakeUpstream({ overrides: { MAX_IMAGE_BYTES_PER_MESSAGE: IMAGE_LIMIT } });

const openai = () => openaiAt(`${ctx.service.url}/v1`);
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
    expect(ctx.upstream.requests[0]?.body.messages).toEqual([{ role: "user", content: question }]);
    expect(ctx.upstream.requests[0]?.raw).toContain(JSON.stringify(question));
  });

  it("are stored as parts on the bound endpoint and sent upstream as given in later turns; text-only history stays a string", async () => {
    const { id, client: bound } = await boundOpenAI(ctx);
    await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: question }] });
    await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "And the second?" }] });

    expect(ctx.upstream.requests[0]?.body.messages).toEqual([{ role: "user", content: question }]);
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([
      { role: "user", content: question },
      { role: "assistant", content: expect.any(String) },
      { role: "user", content: "And the second?" },
    ]);
    const stored = (await ctx.api.get(`/conversations/${id}/messages`)).body.data as any[];
    expect(stored[0]?.content_parts).toEqual(question);
    expect(stored[2]?.content).toBe("And the second?");
  });

  it("over the limit per message (data URLs decoded, summed) get a 413 naming the field, on both endpoints", async () => {
    const { client: bound } = await boundOpenAI(ctx);
    const half = IMAGE_LIMIT / 2 + 1;
    const tooMuch: OpenAI.ChatCompletionContentPart[] = [
      { type: "text", text: "Two halves and a bit" },
      { type: "image_url", image_url: { url: dataUrl(half) } },
      { type: "image_url", image_url: { url: dataUrl(half) } },
    ];
    for (const client of [openai(), bound]) {
      const refused = client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: tooMuch }] });
      await expect(refused).rejects.toMatchObject({ status: 413, code: "image_too_large", param: expect.stringMatching(/^messages\W0\W+content$/) });
    }
    // One of them alone is within the limit.
    await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: tooMuch.slice(0, 2) }] });
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("refuses a part of an unknown type with a 400 naming the field", async () => {
    const refused = openai().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "AAAA", format: "wav" } }] }],
    });
    await expect(refused).rejects.toMatchObject({ status: 400, param: expect.stringMatching(/^messages/) });
    expect(ctx.upstream.requests).toHaveLength(0);
  });
});
