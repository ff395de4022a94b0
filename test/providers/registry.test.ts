import { describe, expect, it } from "vitest";
import type { UpstreamConfig } from "../../src/config.ts";
import { buildModelRegistry } from "../../src/providers/registry.ts";
import type { ChatProvider } from "../../src/providers/types.ts";

const fakeProvider = (name: string): ChatProvider => ({
  name,
  streamChat: () => {
    throw new Error("not called");
  },
  completeChat: () => Promise.reject(new Error("not called")),
});

const upstream = (u: Partial<UpstreamConfig> & { name: string }): UpstreamConfig => ({
  base_url: "http://127.0.0.1:1/v1",
  api_key: "",
  models: [],
  strip_prefix: true,
  timeout_ms: 1000,
  ...u,
});

function registry() {
  return buildModelRegistry(
    {
      simulatorModels: ["parley-sim-1"],
      upstreams: [
        upstream({ name: "hosted", models: ["llama-70b", "qwen-32b"] }),
        upstream({ name: "local", model_prefix: "ollama/" }),
        upstream({ name: "local-big", model_prefix: "ollama/big/", strip_prefix: false }),
      ],
    },
    { simulator: () => fakeProvider("simulator"), upstream: (u) => fakeProvider(`upstream:${u.name}`) },
  );
}

describe("model routing", () => {
  it("routes listed names, then the longest prefix, stripping it unless told not to", () => {
    const r = registry();
    expect(r.resolve("llama-70b")).toMatchObject({ provider: { name: "upstream:hosted" }, upstreamModel: "llama-70b" });
    expect(r.resolve("parley-sim-1")?.provider.name).toBe("simulator");
    expect(r.resolve("ollama/mistral")).toMatchObject({ provider: { name: "upstream:local" }, upstreamModel: "mistral" });
    expect(r.resolve("ollama/big/llama")).toMatchObject({
      provider: { name: "upstream:local-big" },
      upstreamModel: "ollama/big/llama",
    });
  });

  it("serves nothing for unknown names or a bare prefix", () => {
    const r = registry();
    expect(r.resolve("gpt-unknown")).toBeNull();
    expect(r.resolve("ollama/")).toBeNull();
  });

  it("lists named models and describes prefixes for errors", () => {
    const r = registry();
    expect(r.list().map((m) => m.id)).toEqual(["llama-70b", "qwen-32b", "parley-sim-1"]);
    expect(r.describeServed()).toEqual(["llama-70b", "qwen-32b", "parley-sim-1", "ollama/big/*", "ollama/*"]);
  });
});
