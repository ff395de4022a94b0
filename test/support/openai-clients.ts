import OpenAI, { type ClientOptions } from "openai";
import type { apiClient } from "./http.ts";
import { TEST_API_KEY } from "./keys.ts";

/** The openai SDK at `baseURL` (Parley's) with the test key; no retries unless `options` ask for them. */
export const openaiAt = (baseURL: string, options: ClientOptions = {}) => new OpenAI({ apiKey: TEST_API_KEY, maxRetries: 0, ...options, baseURL });

/** A new conversation on `fake-model`, and an openai client bound to it (`/v1/conversations/<id>`). */
export async function boundOpenAI(
  ctx: { service: { url: string }; api: ReturnType<typeof apiClient> },
  options: ClientOptions = {},
): Promise<{ id: string; client: OpenAI }> {
  const { status, body } = await ctx.api.post("/conversations", { model: "fake-model" });
  if (status !== 201) throw new Error(`creating a conversation answered ${status}: ${JSON.stringify(body)}`);
  return { id: body.id, client: openaiAt(`${ctx.service.url}/v1/conversations/${body.id}`, options) };
}
