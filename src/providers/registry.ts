import type { UpstreamConfig } from "../config.ts";
import type { ChatProvider } from "./types.ts";

export interface ResolvedModel {
  provider: ChatProvider;
  /** The name to send to the provider (a routing prefix removed). */
  upstreamModel: string;
}

export interface ServedModel {
  id: string;
  owned_by: string;
}

interface ExactRoute {
  model: string;
  provider: ChatProvider;
  ownedBy: string;
}
interface PrefixRoute {
  prefix: string;
  strip: boolean;
  provider: ChatProvider;
}

/**
 * Which provider serves a model name: exact names first (simulator models,
 * upstreams' listed models), then the longest matching upstream prefix.
 */
export class ModelRegistry {
  readonly #exact = new Map<string, ExactRoute>();
  readonly #prefixes: PrefixRoute[] = [];

  addModels(models: string[], provider: ChatProvider, ownedBy: string): this {
    for (const model of models) {
      if (!this.#exact.has(model)) this.#exact.set(model, { model, provider, ownedBy });
    }
    return this;
  }

  addPrefix(prefix: string, strip: boolean, provider: ChatProvider): this {
    this.#prefixes.push({ prefix, strip, provider });
    this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    return this;
  }

  resolve(model: string): ResolvedModel | null {
    const exact = this.#exact.get(model);
    if (exact) return { provider: exact.provider, upstreamModel: model };
    const route = this.#prefixes.find((r) => model.startsWith(r.prefix) && model.length > r.prefix.length);
    if (!route) return null;
    return { provider: route.provider, upstreamModel: route.strip ? model.slice(route.prefix.length) : model };
  }

  /** Named models, for GET /models. */
  list(): ServedModel[] {
    return [...this.#exact.values()].map((r) => ({ id: r.model, owned_by: r.ownedBy }));
  }

  /** Everything that resolves, for error messages: names, then prefixes as `prefix*`. */
  describeServed(): string[] {
    return [...this.#exact.keys(), ...this.#prefixes.map((r) => `${r.prefix}*`)];
  }
}

export interface ProviderFactories {
  simulator: () => ChatProvider;
  upstream: (upstream: UpstreamConfig) => ChatProvider;
}

export function buildModelRegistry(
  cfg: { simulatorModels: string[]; upstreams: UpstreamConfig[] },
  factories: ProviderFactories,
): ModelRegistry {
  const registry = new ModelRegistry();
  for (const upstream of cfg.upstreams) {
    const provider = factories.upstream(upstream);
    registry.addModels(upstream.models, provider, upstream.name);
    if (upstream.model_prefix) registry.addPrefix(upstream.model_prefix, upstream.strip_prefix, provider);
  }
  // The simulator always serves its names: a fresh install answers with no upstream at all.
  registry.addModels(cfg.simulatorModels, factories.simulator(), "parley-simulator");
  return registry;
}
