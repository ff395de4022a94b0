import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { ModelRegistry } from "../../providers/registry.ts";
import type { AppEnv } from "../env.ts";
import { validationHook } from "../validation.ts";
import { modelListExample } from "./examples.ts";
import { errorResponse, jsonResponse } from "./schemas.ts";

const modelSchema = z
  .object({ id: z.string(), object: z.literal("model"), created: z.int(), owned_by: z.string() })
  .openapi("Model");

const list = createRoute({
  method: "get",
  path: "/",
  operationId: "listModels",
  tags: ["Served models"],
  summary: "The models this deployment serves",
  responses: {
    200: jsonResponse(
      z.object({ object: z.literal("list"), data: z.array(modelSchema) }).openapi("ModelList"),
      "Served models, in the list format the chat-completions SDKs expect.",
      modelListExample,
    ),
    401: errorResponse("No or bad API key (as on every /v1 route)."),
  },
});

export function modelRoutes(deps: { models: ModelRegistry; startedAt: number }) {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook }).openapi(list, (c) =>
    c.json(
      {
        object: "list" as const,
        data: deps.models.list().map((m) => ({
          id: m.id,
          object: "model" as const,
          created: deps.startedAt,
          owned_by: m.owned_by,
        })),
      },
      200,
    ),
  );
}
