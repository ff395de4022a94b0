import { describe, expect, it } from "vitest";
import { openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/* Usage details (cached prompt tokens, reasoning tokens) reach every dialect as the upstream reported them. */

const ctx = useServiceWithFakeUpstream();
const openai = () => openaiAt(`${ctx.service.url}/v1`);
const usageDetails = { prompt_tokens_details: { cached_tokens: 3 }, completion_tokens_details: { reasoning_tokens: 5 } };

describe("usage details", () => {
  it.each([false, true])("are reported on a response (stream: %s) and stored on its reply", async (stream) => {
    ctx.upstream.setBehaviour({ kind: "ok", usageDetails });
    const response = stream
      ? await openai()
          .responses.stream({ model: "fake-model", input: "Hello" })
          .finalResponse()
      : await openai().responses.create({ model: "fake-model", input: "Hello" });
    expect(response.usage?.input_tokens_details.cached_tokens).toBe(3);
    expect(response.usage?.output_tokens_details.reasoning_tokens).toBe(5);
    const again = await openai().responses.retrieve(response.id);
    expect(again.usage).toEqual(response.usage);
  });

  it("are passed on by chat completions, streamed and not", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", usageDetails });
    const whole = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Hi" }] });
    expect(whole.usage?.prompt_tokens_details).toEqual({ cached_tokens: 3 });
    expect(whole.usage?.completion_tokens_details).toEqual({ reasoning_tokens: 5 });
    const chunks = await openai().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: unknown = null;
    for await (const chunk of chunks) usage = chunk.usage ?? usage;
    expect(usage).toMatchObject(usageDetails);
  });
});
