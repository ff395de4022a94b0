import { AIMessage, AIMessageChunk, HumanMessage, ToolMessage } from "@langchain/core/messages";
import { concat } from "@langchain/core/utils/stream";
import { ChatOpenAI } from "@langchain/openai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { toolLoop, type FakeToolCall } from "../support/fake-upstream.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * LangChain's ChatOpenAI against Parley: bindTools gets tool calls back (and a whole loop works on the
 * bound endpoint, though LangChain resends the history each call), and withStructuredOutput's
 * json_schema reaches the upstream with its keys in the order LangChain wrote them.
 */

const ctx = useServiceWithFakeUpstream();

const lisbon: FakeToolCall = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' };
const weatherTool = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "The weather in a city.",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

const chat = (baseURL: string) => new ChatOpenAI({ model: "fake-model", apiKey: TEST_API_KEY, configuration: { baseURL }, maxRetries: 0 });

/**
 * Streams and joins the chunks. (Not `invoke` with `streaming: true`: that estimates token counts with
 * js-tiktoken, which fetches its encoding from the network and so never returns here.)
 */
async function streamed(model: { stream(input: string): Promise<AsyncIterable<AIMessageChunk>> }, input: string): Promise<AIMessageChunk> {
  let whole: AIMessageChunk | undefined;
  for await (const chunk of await model.stream(input)) whole = whole ? concat(whole, chunk) : chunk;
  if (!whole) throw new Error("the stream carried nothing");
  return whole;
}

async function createConversation(): Promise<string> {
  const { body } = await ctx.api.post("/conversations", { model: "fake-model" });
  return body.id;
}

describe("bindTools", () => {
  for (const streaming of [false, true]) {
    it(`returns an AIMessage with tool_calls on the stateless endpoint${streaming ? " (streaming)" : ""}`, async () => {
      ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
      const model = chat(`${ctx.service.url}/v1`).bindTools([weatherTool]);
      const message = streaming ? await streamed(model, "Weather in Lisbon?") : await model.invoke("Weather in Lisbon?");
      expect(message.tool_calls).toEqual([expect.objectContaining({ id: "call_lisbon", name: "get_weather", args: { city: "Lisbon" } })]);
      expect(ctx.upstream.requests[0]?.body.tools).toEqual([weatherTool]);
      expect(ctx.upstream.requests[0]?.body.stream).toBe(streaming);
    });
  }

  it("runs a whole loop on the bound endpoint, storing each message once", async () => {
    const id = await createConversation();
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const model = chat(`${ctx.service.url}/v1/conversations/${id}`).bindTools([weatherTool]);

    const history: (HumanMessage | AIMessage | ToolMessage)[] = [new HumanMessage("Weather in Lisbon?")];
    const call = await model.invoke(history);
    expect(call.tool_calls?.[0]).toMatchObject({ id: "call_lisbon", name: "get_weather", args: { city: "Lisbon" } });
    history.push(call, new ToolMessage({ tool_call_id: "call_lisbon", content: "sunny in Lisbon" }));
    const answer = await model.invoke(history);
    expect(answer.content).toBe("Tool said: sunny in Lisbon");

    expect(ctx.upstream.requests[1]?.body.messages).toEqual([
      { role: "user", content: "Weather in Lisbon?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_lisbon", type: "function", function: { name: "get_weather", arguments: lisbon.arguments } }] },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" },
    ]);
    const stored = (await ctx.api.get(`/conversations/${id}/messages`)).body.data as any[];
    expect(stored.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
  });
});

describe("withStructuredOutput", () => {
  // jsonb would put "answer" (shorter) before "reasoning": a schema that reasons first must arrive as written.
  const verdict = z.object({
    reasoning: z.string().describe("Think first."),
    answer: z.enum(["yes", "no"]),
    confidence: z.number(),
  });
  const reply = JSON.stringify({ reasoning: "Because.", answer: "yes", confidence: 0.9 });

  /** What LangChain sends straight to the upstream: the reference for what must arrive through Parley. */
  async function sentDirectly(): Promise<string> {
    ctx.upstream.setBehaviour({ kind: "ok", text: reply });
    await chat(ctx.upstream.baseURL).withStructuredOutput(verdict, { name: "verdict" }).invoke("Is it?");
    const sent = JSON.stringify(ctx.upstream.requests[0]?.body.response_format);
    ctx.upstream.reset();
    return sent;
  }

  for (const endpoint of ["stateless", "bound"] as const) {
    it(`parses the answer, and the json_schema reaches the upstream with its key order (${endpoint})`, async () => {
      const expected = await sentDirectly();
      expect(expected).toContain('"properties":{"reasoning":');
      const baseURL = endpoint === "stateless" ? `${ctx.service.url}/v1` : `${ctx.service.url}/v1/conversations/${await createConversation()}`;
      ctx.upstream.setBehaviour({ kind: "ok", text: reply });
      const parsed = await chat(baseURL).withStructuredOutput(verdict, { name: "verdict" }).invoke("Is it?");
      expect(parsed).toEqual({ reasoning: "Because.", answer: "yes", confidence: 0.9 });
      // Raw text: parsing and comparing objects would not see the order.
      expect(ctx.upstream.requests[0]?.raw).toContain(`"response_format":${expected}`);
    });
  }
});
