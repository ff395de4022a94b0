import { z } from "zod";

/**
 * The Open Responses specification's schemas (openresponses.org, the
 * published OpenAPI document, version 2026-04-24), transcribed as zod for
 * tests: the Response resource, output items and every streaming event Parley
 * sends, with their required fields, types and enums. Objects are loose, as
 * JSON Schema allows properties it does not list.
 */

const integer = z.int();

// ---------------------------------------------------------------- content parts

const InputTextContent = z.looseObject({ type: z.literal("input_text"), text: z.string() });
const UrlCitationBody = z.looseObject({
  type: z.literal("url_citation"),
  url: z.string(),
  start_index: integer,
  end_index: integer,
  title: z.string(),
});
const TopLogProb = z.looseObject({ token: z.string(), logprob: z.number(), bytes: z.array(integer) });
export const LogProb = z.looseObject({ token: z.string(), logprob: z.number(), bytes: z.array(integer), top_logprobs: z.array(TopLogProb) });
const OutputTextContent = z.looseObject({
  type: z.literal("output_text"),
  text: z.string(),
  annotations: z.array(UrlCitationBody),
  logprobs: z.array(LogProb).optional(),
});
const TextContent = z.looseObject({ type: z.literal("text"), text: z.string() });
const SummaryTextContent = z.looseObject({ type: z.literal("summary_text"), text: z.string() });
const ReasoningTextContent = z.looseObject({ type: z.literal("reasoning_text"), text: z.string() });
const RefusalContent = z.looseObject({ type: z.literal("refusal"), refusal: z.string() });
const ImageDetail = z.enum(["low", "high", "auto"]);
const InputImageContent = z.looseObject({ type: z.literal("input_image"), image_url: z.string().nullable(), detail: ImageDetail });
const InputFileContent = z.looseObject({ type: z.literal("input_file"), filename: z.string().optional(), file_url: z.string().optional() });
const InputVideoContent = z.looseObject({ type: z.literal("input_video"), video_url: z.string() });

export const ContentPart = z.discriminatedUnion("type", [
  InputTextContent,
  OutputTextContent,
  TextContent,
  SummaryTextContent,
  ReasoningTextContent,
  RefusalContent,
  InputImageContent,
  InputFileContent,
]);

// ---------------------------------------------------------------- items (ItemField)

const MessageStatus = z.enum(["in_progress", "completed", "incomplete"]);
const MessageRole = z.enum(["user", "assistant", "system", "developer"]);

export const Message = z.looseObject({
  type: z.literal("message"),
  id: z.string(),
  status: MessageStatus,
  role: MessageRole,
  content: z.array(z.union([ContentPart, InputVideoContent])),
});
export const FunctionCall = z.looseObject({
  type: z.literal("function_call"),
  id: z.string(),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
  status: z.enum(["in_progress", "completed", "incomplete"]),
});
export const FunctionCallOutput = z.looseObject({
  type: z.literal("function_call_output"),
  id: z.string(),
  call_id: z.string(),
  output: z.union([z.string(), z.array(z.discriminatedUnion("type", [InputTextContent, InputImageContent, InputFileContent]))]),
  status: z.enum(["in_progress", "completed", "incomplete"]),
});
export const ReasoningBody = z.looseObject({
  type: z.literal("reasoning"),
  id: z.string(),
  content: z.array(ContentPart).optional(),
  summary: z.array(ContentPart),
  encrypted_content: z.string().optional(),
});
export const ItemField = z.discriminatedUnion("type", [Message, FunctionCall, FunctionCallOutput, ReasoningBody]);

// ---------------------------------------------------------------- the Response resource

const FunctionTool = z.looseObject({
  type: z.literal("function"),
  name: z.string(),
  description: z.string().nullable(),
  parameters: z.record(z.string(), z.unknown()).nullable(),
  strict: z.boolean().nullable(),
});
const ToolChoiceValueEnum = z.enum(["none", "auto", "required"]);
const FunctionToolChoice = z.looseObject({ type: z.literal("function"), name: z.string().optional() });
const AllowedToolChoice = z.looseObject({ type: z.literal("allowed_tools"), tools: z.array(FunctionToolChoice), mode: ToolChoiceValueEnum });
const TextField = z.looseObject({
  format: z.discriminatedUnion("type", [
    z.looseObject({ type: z.literal("text") }),
    z.looseObject({ type: z.literal("json_object") }),
    z.looseObject({
      type: z.literal("json_schema"),
      name: z.string(),
      description: z.string().nullable(),
      schema: z.unknown(),
      strict: z.boolean(),
    }),
  ]),
  verbosity: z.enum(["low", "medium", "high"]).optional(),
});
const ReasoningEffortEnum = z.enum(["none", "low", "medium", "high", "xhigh"]);
const ReasoningSummaryEnum = z.enum(["concise", "detailed", "auto"]);
const Usage = z.looseObject({
  input_tokens: integer,
  output_tokens: integer,
  total_tokens: integer,
  input_tokens_details: z.looseObject({ cached_tokens: integer }),
  output_tokens_details: z.looseObject({ reasoning_tokens: integer }),
});

export const ResponseResource = z.looseObject({
  id: z.string(),
  object: z.literal("response"),
  created_at: integer,
  completed_at: integer.nullable(),
  status: z.string(),
  incomplete_details: z.looseObject({ reason: z.string() }).nullable(),
  model: z.string(),
  previous_response_id: z.string().nullable(),
  instructions: z.string().nullable(),
  output: z.array(ItemField),
  error: z.looseObject({ code: z.string(), message: z.string() }).nullable(),
  tools: z.array(FunctionTool),
  tool_choice: z.union([FunctionToolChoice, ToolChoiceValueEnum, AllowedToolChoice]),
  truncation: z.enum(["auto", "disabled"]),
  parallel_tool_calls: z.boolean(),
  text: TextField,
  top_p: z.number(),
  presence_penalty: z.number(),
  frequency_penalty: z.number(),
  top_logprobs: integer,
  temperature: z.number(),
  reasoning: z.looseObject({ effort: ReasoningEffortEnum.nullable(), summary: ReasoningSummaryEnum.nullable() }).nullable(),
  usage: Usage.nullable(),
  max_output_tokens: integer.nullable(),
  max_tool_calls: integer.nullable(),
  store: z.boolean(),
  background: z.boolean(),
  service_tier: z.string(),
  metadata: z.unknown(),
  safety_identifier: z.string().nullable(),
  prompt_cache_key: z.string().nullable(),
});

// ---------------------------------------------------------------- streaming events

const seq = { sequence_number: integer };
const lifecycle = <T extends string>(type: T) => z.looseObject({ type: z.literal(type), ...seq, response: ResponseResource });
const onItem = { ...seq, item_id: z.string(), output_index: integer };

export const StreamingEvent = z.discriminatedUnion("type", [
  lifecycle("response.created"),
  lifecycle("response.queued"),
  lifecycle("response.in_progress"),
  lifecycle("response.completed"),
  lifecycle("response.failed"),
  lifecycle("response.incomplete"),
  z.looseObject({ type: z.literal("response.output_item.added"), ...seq, output_index: integer, item: ItemField.nullable() }),
  z.looseObject({ type: z.literal("response.output_item.done"), ...seq, output_index: integer, item: ItemField.nullable() }),
  z.looseObject({ type: z.literal("response.reasoning_summary_part.added"), ...onItem, summary_index: integer, part: ContentPart }),
  z.looseObject({ type: z.literal("response.reasoning_summary_part.done"), ...onItem, summary_index: integer, part: ContentPart }),
  z.looseObject({ type: z.literal("response.content_part.added"), ...onItem, content_index: integer, part: ContentPart }),
  z.looseObject({ type: z.literal("response.content_part.done"), ...onItem, content_index: integer, part: ContentPart }),
  z.looseObject({
    type: z.literal("response.output_text.delta"),
    ...onItem,
    content_index: integer,
    delta: z.string(),
    logprobs: z.array(LogProb).optional(),
    obfuscation: z.string().optional(),
  }),
  z.looseObject({ type: z.literal("response.output_text.done"), ...onItem, content_index: integer, text: z.string(), logprobs: z.array(LogProb).optional() }),
  z.looseObject({ type: z.literal("response.refusal.delta"), ...onItem, content_index: integer, delta: z.string() }),
  z.looseObject({ type: z.literal("response.refusal.done"), ...onItem, content_index: integer, refusal: z.string() }),
  z.looseObject({ type: z.literal("response.reasoning_text.delta"), ...onItem, content_index: integer, delta: z.string(), obfuscation: z.string().optional() }),
  z.looseObject({ type: z.literal("response.reasoning_text.done"), ...onItem, content_index: integer, text: z.string() }),
  z.looseObject({ type: z.literal("response.reasoning_summary_text.delta"), ...onItem, summary_index: integer, delta: z.string() }),
  z.looseObject({ type: z.literal("response.reasoning_summary_text.done"), ...onItem, summary_index: integer, text: z.string() }),
  z.looseObject({
    type: z.literal("response.output_text.annotation.added"),
    ...onItem,
    content_index: integer,
    annotation_index: integer,
    annotation: UrlCitationBody.nullable(),
  }),
  z.looseObject({ type: z.literal("response.function_call_arguments.delta"), ...onItem, delta: z.string(), obfuscation: z.string().optional() }),
  z.looseObject({ type: z.literal("response.function_call_arguments.done"), ...onItem, arguments: z.string() }),
  z.looseObject({
    type: z.literal("error"),
    ...seq,
    error: z.looseObject({
      type: z.string(),
      code: z.string().nullable(),
      message: z.string(),
      param: z.string().nullable(),
      headers: z.record(z.string(), z.string()).optional(),
    }),
  }),
]);

/** The spec's issues with a value, as readable lines (empty when it conforms). */
export function specIssues(schema: z.ZodType, value: unknown): string[] {
  const result = schema.safeParse(value);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
}
