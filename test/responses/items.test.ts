import { z } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import type { MessageRow } from "../../src/db/schema.ts";
import { NotFoundError } from "../../src/domain/errors.ts";
import type { GivenMessage } from "../../src/domain/message-rows.ts";
import { validationErrorBody } from "../../src/http/errors.ts";
import {
  inputItemSchema,
  inputItemsToMessages,
  messageToItems,
  parseItemId,
  referencedItemIds,
  type InputItem,
  type Item,
} from "../../src/http/responses/items.ts";
import { ItemField, specIssues } from "../support/open-responses.ts";

const SUFFIX = "01jf3t8vvaf8s9k0d7k6x1s2y3";
const ROW_ID = `msg_${SUFFIX}`;

const inputSchema = z.object({ input: z.array(inputItemSchema) });
const parseInput = (input: unknown[]): InputItem[] => inputSchema.parse({ input }).input;

/** The 400 a bad input answers with: its param (the field path) and message. */
function refusal(input: unknown[]): { param: string | null; message: string } {
  const result = inputSchema.safeParse({ input });
  if (result.success) throw new Error(`accepted: ${JSON.stringify(result.data)}`);
  const { param, message } = validationErrorBody(result.error, "json").error;
  return { param, message };
}

type RowView = Parameters<typeof messageToItems>[0];

/** A stored row for a given message, as completedMessageRows would store it (the fields items are made from). */
function rowOf(m: GivenMessage, id = ROW_ID, extra: Partial<RowView> = {}): RowView {
  return {
    id,
    role: m.role,
    content: m.content,
    parts: (m.parts ?? null) as MessageRow["parts"],
    toolCalls: (m.tool_calls ?? null) as MessageRow["toolCalls"],
    toolCallId: m.tool_call_id ?? null,
    reasoning: m.reasoning ?? null,
    logprobs: null,
    status: "completed",
    finishReason: null,
    ...extra,
  };
}

function expectSpecItems(items: Item[]): void {
  for (const item of items) expect(specIssues(ItemField, item), JSON.stringify(item)).toEqual([]);
}

describe("input items → the one message model → items", () => {
  const cases: { name: string; input: unknown[]; messages: GivenMessage[]; items: unknown[] }[] = [
    {
      name: "a user message given as a string stays a string",
      input: [{ role: "user", content: "Hello" }],
      messages: [{ role: "user", content: "Hello", parts: null }],
      items: [[{ id: ROW_ID, type: "message", status: "completed", role: "user", content: [{ type: "input_text", text: "Hello" }] }]],
    },
    {
      name: "text and image parts become chat parts",
      input: [
        {
          type: "message",
          role: "user",
          content: [
            { type: "input_text", text: "What is this?" },
            { type: "input_image", image_url: "https://example.com/cat.png", detail: "low" },
          ],
        },
      ],
      messages: [
        {
          role: "user",
          content: "What is this?",
          parts: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
          ],
        },
      ],
      items: [
        [
          {
            id: ROW_ID,
            type: "message",
            status: "completed",
            role: "user",
            content: [
              { type: "input_text", text: "What is this?" },
              { type: "input_image", image_url: "https://example.com/cat.png", detail: "low" },
            ],
          },
        ],
      ],
    },
    {
      name: "system and developer messages keep their role",
      input: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: [{ type: "input_text", text: "Answer in French." }] },
      ],
      messages: [
        { role: "system", content: "Be brief.", parts: null },
        { role: "developer", content: "Answer in French.", parts: null },
      ],
      items: [
        [{ id: ROW_ID, type: "message", status: "completed", role: "system", content: [{ type: "input_text", text: "Be brief." }] }],
        [{ id: ROW_ID, type: "message", status: "completed", role: "developer", content: [{ type: "input_text", text: "Answer in French." }] }],
      ],
    },
    {
      name: "reasoning, an assistant message and parallel function calls fold into one assistant message; outputs become tool messages",
      input: [
        { type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "Two cities: " }, { type: "reasoning_text", text: "two calls." }] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "Checking both.", annotations: [] }] },
        { type: "function_call", call_id: "call_a", name: "weather", arguments: '{"city":"Paris"}' },
        { type: "function_call", call_id: "call_b", name: "weather", arguments: '{"city":"Oslo"}', status: "completed" },
        { type: "function_call_output", call_id: "call_a", output: "18C" },
        { type: "function_call_output", call_id: "call_b", output: [{ type: "input_text", text: "4C" }] },
      ],
      messages: [
        {
          role: "assistant",
          content: "Checking both.",
          reasoning: "Two cities: two calls.",
          tool_calls: [
            { id: "call_a", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
            { id: "call_b", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_a", content: "18C", parts: null },
        { role: "tool", tool_call_id: "call_b", content: "4C", parts: [{ type: "text", text: "4C" }] },
      ],
      items: [
        [
          { id: `rs_${SUFFIX}`, type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "Two cities: two calls." }] },
          { id: ROW_ID, type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "Checking both.", annotations: [] }] },
          { id: `fc_${SUFFIX}_0`, type: "function_call", call_id: "call_a", name: "weather", arguments: '{"city":"Paris"}', status: "completed" },
          { id: `fc_${SUFFIX}_1`, type: "function_call", call_id: "call_b", name: "weather", arguments: '{"city":"Oslo"}', status: "completed" },
        ],
        [{ id: ROW_ID, type: "function_call_output", call_id: "call_a", output: "18C", status: "completed" }],
        [{ id: ROW_ID, type: "function_call_output", call_id: "call_b", output: [{ type: "input_text", text: "4C" }], status: "completed" }],
      ],
    },
    {
      name: "a call without text: no message item; a reasoning summary is the reasoning when there is no content",
      input: [
        { type: "reasoning", id: "rs_x", summary: [{ type: "summary_text", text: "First." }, { type: "summary_text", text: "Second." }] },
        { type: "function_call", call_id: "call_1", name: "lookup", arguments: "{}" },
      ],
      messages: [
        {
          role: "assistant",
          content: "",
          reasoning: "First.\n\nSecond.",
          tool_calls: [{ id: "call_1", type: "function", function: { name: "lookup", arguments: "{}" } }],
        },
      ],
      items: [
        [
          { id: `rs_${SUFFIX}`, type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "First.\n\nSecond." }] },
          { id: `fc_${SUFFIX}_0`, type: "function_call", call_id: "call_1", name: "lookup", arguments: "{}", status: "completed" },
        ],
      ],
    },
    {
      name: "two assistant messages in a row stay two (a second text starts the next one); a refusal is kept as text",
      input: [
        { role: "assistant", content: "One." },
        { role: "assistant", content: [{ type: "refusal", refusal: "I can't." }] },
      ],
      messages: [
        { role: "assistant", content: "One." },
        { role: "assistant", content: "I can't." },
      ],
      items: [
        [{ id: ROW_ID, type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "One.", annotations: [] }] }],
        [{ id: ROW_ID, type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "I can't.", annotations: [] }] }],
      ],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const messages = inputItemsToMessages(parseInput(c.input), { references: new Map() });
      expect(messages).toEqual(c.messages);
      const items = messages.map((m) => messageToItems(rowOf(m)));
      expect(items).toEqual(c.items);
      for (const list of items) expectSpecItems(list);
    });
  }

  it("takes items back as it shows them: a stored turn's items, sent again, give the same messages", () => {
    const messages = inputItemsToMessages(parseInput(cases[3]!.input), { references: new Map() });
    const shown = messages.flatMap((m) => messageToItems(rowOf(m)));
    expect(inputItemsToMessages(parseInput(shown), { references: new Map() })).toEqual(messages);
  });
});

describe("item references", () => {
  const stored: Item = { id: `fc_${SUFFIX}_0`, type: "function_call", call_id: "call_9", name: "f", arguments: "{}", status: "completed" };

  it("lists the ids an input references, once each, for the caller to fetch", () => {
    const input = parseInput([{ type: "item_reference", id: "a" }, { id: "b" }, { role: "user", content: "x" }, { type: "item_reference", id: "a" }]);
    expect(referencedItemIds(input)).toEqual(["a", "b"]);
  });

  it("puts the referenced item in the reference's place, where it folds like any other", () => {
    const input = parseInput([{ id: stored.id }, { type: "function_call_output", call_id: "call_9", output: "ok" }]);
    const messages = inputItemsToMessages(input, { references: new Map([[stored.id, stored]]) });
    expect(messages).toEqual([
      { role: "assistant", content: "", tool_calls: [{ id: "call_9", type: "function", function: { name: "f", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "call_9", content: "ok", parts: null },
    ]);
  });

  it("refuses a reference to an item it was not given, naming input.N.id", () => {
    const input = parseInput([{ role: "user", content: "x" }, { type: "item_reference", id: "msg_missing" }]);
    let thrown: unknown;
    try {
      inputItemsToMessages(input, { references: new Map() });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(NotFoundError);
    expect((thrown as NotFoundError).param).toBe("input.1.id");
    expect((thrown as NotFoundError).code).toBe("not_found");
    expect((thrown as Error).message).toContain("msg_missing");
  });
});

describe("input refusals name the field", () => {
  const cases: { name: string; input: unknown[]; param: string; says: RegExp }[] = [
    { name: "an unknown item type", input: [{ role: "user", content: "x" }, { type: "computer_call_output" }], param: "input.1.type", says: /message, function_call/ },
    { name: "an unknown part type", input: [{ role: "user", content: [{ type: "input_audio" }] }], param: "input.0.content.0.type", says: /input_text/ },
    { name: "an unknown role", input: [{ role: "critic", content: "x" }], param: "input.0.role", says: /user, system, developer, assistant/ },
    { name: "a file part", input: [{ role: "user", content: [{ type: "input_file", file_id: "file_1" }] }], param: "input.0.content.0", says: /input_file.*not supported/ },
    { name: "an image by file_id", input: [{ role: "user", content: [{ type: "input_image", file_id: "file_1", detail: "auto" }] }], param: "input.0.content.0.file_id", says: /file_id/ },
    { name: "an image by http: URL", input: [{ role: "user", content: [{ type: "input_image", image_url: "http://example.com/a.png" }] }], param: "input.0.content.0.image_url", says: /https/ },
    { name: "an image in a system message", input: [{ role: "system", content: [{ type: "input_image", image_url: "https://e.com/a.png" }] }], param: "input.0.content.0.type", says: /input_text/ },
    { name: "encrypted reasoning", input: [{ type: "reasoning", summary: [], encrypted_content: "gAAAA" }], param: "input.0.encrypted_content", says: /encrypted/ },
    { name: "an image in a tool output", input: [{ type: "function_call_output", call_id: "c", output: [{ type: "input_image", image_url: "https://e.com/a.png" }] }], param: "input.0.output.0", says: /text only/ },
    { name: "a function call without arguments", input: [{ type: "function_call", call_id: "c", name: "f" }], param: "input.0.arguments", says: /string/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, () => {
      const { param, message } = refusal(c.input);
      expect(param).toBe(c.param);
      expect(message).toMatch(c.says);
    });
  }

  it("takes an output message sent back as it was shown (status, id, empty content, annotations)", () => {
    const input = parseInput([
      { id: ROW_ID, type: "message", status: "completed", role: "assistant", content: [] },
      { id: ROW_ID, type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "hi", annotations: [], logprobs: [] }] },
    ]);
    expect(inputItemsToMessages(input, { references: new Map() })).toEqual([
      { role: "assistant", content: "" },
      { role: "assistant", content: "hi" },
    ]);
  });
});

describe("rows as items", () => {
  it("an assistant reply in flight is in progress; one cut by length or ended failed is incomplete", () => {
    const reply: GivenMessage = { role: "assistant", content: "Partial" };
    const status = (extra: Partial<RowView>) => (messageToItems(rowOf(reply, ROW_ID, extra))[0] as { status: string }).status;
    expect(status({ status: "queued" })).toBe("in_progress");
    expect(status({ status: "in_progress" })).toBe("in_progress");
    expect(status({ status: "completed", finishReason: "stop" })).toBe("completed");
    expect(status({ status: "completed", finishReason: "length" })).toBe("incomplete");
    expect(status({ status: "failed" })).toBe("incomplete");
    expect(status({ status: "cancelled" })).toBe("incomplete");
  });

  it("a queued reply with nothing yet is an empty message", () => {
    const items = messageToItems(rowOf({ role: "assistant", content: "" }, ROW_ID, { status: "queued" }));
    expect(items).toEqual([{ id: ROW_ID, type: "message", status: "in_progress", role: "assistant", content: [] }]);
    expectSpecItems(items);
  });

  it("includes the stored logprobs only when asked", () => {
    const logprobs = { content: [{ token: "Hi", logprob: -0.1, bytes: [72, 105], top_logprobs: [{ token: "Hi", logprob: -0.1, bytes: [72, 105] }] }] };
    const row = rowOf({ role: "assistant", content: "Hi" }, ROW_ID, { logprobs });
    expect(messageToItems(row)).toEqual([
      { id: ROW_ID, type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "Hi", annotations: [] }] },
    ]);
    const withLogprobs = messageToItems(row, { include: ["message.output_text.logprobs"] });
    expect(withLogprobs[0]).toMatchObject({ content: [{ logprobs: logprobs.content }] });
    expectSpecItems(withLogprobs);
  });
});

describe("item ids", () => {
  it("lead back to their row and part", () => {
    expect(parseItemId(ROW_ID)).toEqual({ messageId: ROW_ID, part: "message" });
    expect(parseItemId(`rs_${SUFFIX}`)).toEqual({ messageId: ROW_ID, part: "reasoning" });
    expect(parseItemId(`fc_${SUFFIX}_12`)).toEqual({ messageId: ROW_ID, part: { call: 12 } });
  });

  it("are null when not ours", () => {
    for (const id of ["msg_short", `fc_${SUFFIX}`, `rs_${SUFFIX}_1`, `fc_${SUFFIX}_01`, `conv_${SUFFIX}`, `msg_${SUFFIX}_0`, "", "msg"]) {
      expect(parseItemId(id), id).toBeNull();
    }
  });
});
