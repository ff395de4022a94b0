import { Scalar } from "@scalar/hono-api-reference";
import { Hono } from "hono";
import type { AppEnv } from "../env.ts";

export interface ApiReferenceOptions {
  /** Where the page finds the OpenAPI document (served by the same app). */
  documentUrl: string;
  /**
   * DOCS_SCRIPT_URL: the Scalar API Reference standalone bundle the page loads (a copy you host, for a
   * network without the internet or a strict CSP). Unset: Scalar's own default, its CDN.
   */
  scriptUrl?: string | undefined;
}

/**
 * `GET /docs`: the API reference rendered in the browser by Scalar from /openapi.json. The page is static
 * HTML; the browser fetches the script and the document. Nothing of Scalar's services is asked for:
 * no telemetry, no web fonts, no AI agent, no developer toolbar, and "try it" calls Parley directly
 * (same origin, no proxy).
 */
export function apiReferenceRoutes(options: ApiReferenceOptions) {
  return new Hono<AppEnv>().get(
    "/docs",
    Scalar({
      url: options.documentUrl,
      pageTitle: "Parley API reference",
      ...(options.scriptUrl ? { cdn: options.scriptUrl } : {}),
      telemetry: false,
      withDefaultFonts: false,
      agent: { disabled: true },
      // The toolbar's share, deploy and SDK buttons send the document to Scalar's services.
      showDeveloperTools: "never",
      // A key typed into "try it" is not saved in the browser's local storage.
      persistAuth: false,
    }),
  );
}
