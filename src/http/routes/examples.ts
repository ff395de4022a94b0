/**
 * Examples for /openapi.json (and so /docs): what the simulator answered, ids and texts made readable.
 * The lint test (test/http/openapi-lint.test.ts) checks each one against its schema, so one that drifts
 * from the schema fails there.
 */

const CONV = "conv_01m8tbgyntf69sg2paq5yspzvz";
const USER_MSG = "msg_01m8tbgzwmf69sg2pvm99hnc68";
const REPLY = "msg_01m8tbgzswf69sg2pk36b9qamz";
const T = 1796180836;

export const conversationExample = {
  id: CONV,
  object: "conversation",
  created_at: T,
  updated_at: T,
  title: "Lisbon trip",
  model: "parley-sim-1",
  system: "You are a helpful travel guide.",
  params: { temperature: 0.7, max_tokens: 256 },
  metadata: { app: "travel" },
  message_count: 2,
  context_strategy: "auto",
  summary: null,
} as const;

export const createConversationExample = {
  model: "parley-sim-1",
  title: "Lisbon trip",
  system: "You are a helpful travel guide.",
  params: { temperature: 0.7, max_tokens: 256 },
  metadata: { app: "travel" },
};

export const updateConversationExample = { title: "Lisbon, three days", metadata: { app: "travel", trip: "2026-05" } };

export const forkConversationExample = { message_id: USER_MSG };

export const conversationListExample = {
  object: "list",
  data: [conversationExample],
  first_id: CONV,
  last_id: CONV,
  has_more: false,
} as const;

export const conversationDeletedExample = { id: CONV, object: "conversation.deleted", deleted: true } as const;

const messageBase = {
  object: "message",
  conversation_id: CONV,
  content_parts: null,
  name: null,
  tool_calls: null,
  tool_call_id: null,
  reasoning: null,
  logprobs: null,
  error: null,
  created_at: T,
  metadata: {},
} as const;

export const userMessageExample = {
  ...messageBase,
  id: USER_MSG,
  seq: 1,
  role: "user",
  content: "Three things to see in Lisbon?",
  status: "completed",
  model: null,
  finish_reason: null,
  usage: null,
  completed_at: T,
  ttft_ms: null,
  tokens: 11,
  context: null,
} as const;

export const replyExample = {
  ...messageBase,
  id: REPLY,
  seq: 2,
  role: "assistant",
  content: "The Alfama's lanes, the Belém Tower and the view from the Miradouro da Senhora do Monte.",
  status: "completed",
  model: "parley-sim-1",
  finish_reason: "stop",
  usage: { prompt_tokens: 22, completion_tokens: 24, total_tokens: 46 },
  completed_at: T + 2,
  // Created at 1796180836597 (its message.created event), first delta at 1796180836783 (messageEventsExample).
  ttft_ms: 186,
  tokens: 24,
  context: { messages: 1, tokens: 22 },
} as const;

export const queuedReplyExample = {
  ...replyExample,
  content: "",
  status: "queued",
  finish_reason: null,
  usage: null,
  completed_at: null,
  ttft_ms: null,
  tokens: null,
  context: null,
} as const;

export const cancelledReplyExample = {
  ...replyExample,
  content: "The Alfama's lanes, the Belém",
  status: "cancelled",
  finish_reason: null,
} as const;

export const appendMessageExample = { content: "Three things to see in Lisbon?" };
export const regenerateExample = { params: { temperature: 1.0 } };

export const turnExample = { message: userMessageExample, reply: replyExample } as const;
export const queuedTurnExample = { message: userMessageExample, reply: queuedReplyExample } as const;

export const messageListExample = {
  object: "list",
  data: [userMessageExample, replyExample],
  first_id: USER_MSG,
  last_id: REPLY,
  has_more: false,
} as const;

/** A streamed turn as the wire carries it (ids are resume points). */
export const messageEventsExample = [
  `id: 1796180836597-0\nevent: message.created\ndata: ${JSON.stringify(userMessageExample)}\n`,
  `id: 1796180836597-1\nevent: message.created\ndata: ${JSON.stringify({ ...queuedReplyExample })}\n`,
  `id: 1796180836783-0\nevent: message.delta\ndata: ${JSON.stringify({ id: REPLY, delta: { content: "The Alfama's" } })}\n`,
  `id: 1796180838012-0\nevent: message.completed\ndata: ${JSON.stringify(replyExample)}\n`,
  `id: 1796180838012-1\nevent: done\ndata: [DONE]\n`,
].join("\n");

const ITEM_USER = {
  id: USER_MSG,
  type: "message",
  status: "completed",
  role: "user",
  content: [{ type: "input_text", text: "Three things to see in Lisbon?" }],
} as const;
const ITEM_REPLY = {
  id: REPLY,
  type: "message",
  status: "completed",
  role: "assistant",
  content: [{ type: "output_text", text: replyExample.content, annotations: [] }],
} as const;

export const itemExample = ITEM_REPLY;
export const itemListExample = {
  object: "list",
  data: [ITEM_REPLY, ITEM_USER],
  first_id: REPLY,
  last_id: USER_MSG,
  has_more: false,
} as const;
export const addItemsExample = { items: [{ type: "message", role: "user", content: "Note: I arrive on Friday." }] };
export const addedItemsExample = {
  object: "list",
  data: [{ id: "msg_01m8tbh6yff69sg2sk2jt742q3", type: "message", status: "completed", role: "user", content: [{ type: "input_text", text: "Note: I arrive on Friday." }] }],
  first_id: "msg_01m8tbh6yff69sg2sk2jt742q3",
  last_id: "msg_01m8tbh6yff69sg2sk2jt742q3",
  has_more: false,
} as const;

export const modelListExample = {
  object: "list",
  data: [{ id: "parley-sim-1", object: "model", created: 1796180826, owned_by: "parley-simulator" }],
} as const;

export const chatCompletionRequestExample = {
  model: "parley-sim-1",
  messages: [
    { role: "system", content: "You are a helpful travel guide." },
    { role: "user", content: "Say hello in Portuguese." },
  ],
  max_tokens: 32,
};
export const chatCompletionExample = {
  id: "chatcmpl_01m8tbh5zxf69sg2rpyvkp0dfk",
  object: "chat.completion",
  created: 1796180842,
  model: "parley-sim-1",
  choices: [{ index: 0, message: { role: "assistant", content: "Olá!" }, finish_reason: "stop", logprobs: null }],
  usage: { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 },
} as const;
export const chatCompletionChunksExample = [
  { choices: [{ index: 0, delta: { role: "assistant", content: "Ol" }, finish_reason: null, logprobs: null }] },
  { choices: [{ index: 0, delta: { content: "á!" }, finish_reason: null, logprobs: null }] },
  { choices: [{ index: 0, delta: {}, finish_reason: "stop", logprobs: null }], usage: chatCompletionExample.usage },
]
  .map((c) => `data: ${JSON.stringify({ id: chatCompletionExample.id, object: "chat.completion.chunk", created: 1796180842, model: "parley-sim-1", ...c })}\n`)
  .concat("data: [DONE]\n")
  .join("\n");

const RESP = "resp_01m8tbh75rf69sg2star0q6rqe";
export const createResponseExample = { model: "parley-sim-1", input: "Write a haiku about Lisbon.", max_output_tokens: 64 };
export const responseExample = {
  id: RESP,
  object: "response",
  created_at: 1796180843,
  status: "completed",
  background: false,
  completed_at: 1796180844,
  conversation: null,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: 64,
  max_tool_calls: null,
  model: "parley-sim-1",
  output: [
    {
      id: "msg_01m8tbh771f69sg2ta2f19v35e",
      type: "message",
      status: "completed",
      role: "assistant",
      content: [{ type: "output_text", text: "Yellow tram climbing / past tiled walls to the castle / the river below", annotations: [] }],
    },
  ],
  parallel_tool_calls: true,
  previous_response_id: null,
  prompt_cache_key: null,
  reasoning: null,
  safety_identifier: null,
  service_tier: "default",
  store: true,
  temperature: 1,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  top_logprobs: 0,
  top_p: 1,
  truncation: "disabled",
  usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 16, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 26 },
  user: null,
  metadata: {},
  presence_penalty: 0,
  frequency_penalty: 0,
} as const;
export const responseEventsExample = [
  `event: response.created\ndata: ${JSON.stringify({ type: "response.created", sequence_number: 0, response: { ...responseExample, status: "in_progress", completed_at: null, output: [], usage: null } })}\n`,
  `event: response.output_text.delta\ndata: ${JSON.stringify({ type: "response.output_text.delta", sequence_number: 4, item_id: "msg_01m8tbh771f69sg2ta2f19v35e", output_index: 0, content_index: 0, delta: "Yellow tram", logprobs: [] })}\n`,
  `event: response.completed\ndata: ${JSON.stringify({ type: "response.completed", sequence_number: 9, response: responseExample })}\n`,
].join("\n");
export const responseDeletedExample = { id: RESP, object: "response.deleted", deleted: true } as const;
export const inputItemsExample = {
  object: "list",
  data: [{ id: "msg_01m8tbh77af69sg2tp93xsehq7", type: "message", status: "completed", role: "user", content: [{ type: "input_text", text: "Write a haiku about Lisbon." }] }],
  first_id: "msg_01m8tbh77af69sg2tp93xsehq7",
  last_id: "msg_01m8tbh77af69sg2tp93xsehq7",
  has_more: false,
} as const;

const apiKey = {
  id: "key_01jf3t8vvaf8s9k0d7k6x1s2y3",
  object: "api_key",
  tenant: "acme",
  name: "backend",
  prefix: "prly_3f9a1c2e7b40",
  created_at: 1796180800,
  revoked_at: null,
} as const;
export const createApiKeyExample = { tenant: "acme", name: "backend" };
export const newApiKeyExample = { ...apiKey, key: "prly_3f9a1c2e7b40_9d1e0c5a7b3f4e2d8c6a1b0f9e8d7c6b5a4f3e2d1c0b9a8f" } as const;
export const apiKeyListExample = { object: "list", data: [apiKey] } as const;
export const revokedApiKeyExample = { ...apiKey, revoked_at: 1796184400 } as const;
