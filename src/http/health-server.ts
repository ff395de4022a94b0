import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { Hono } from "hono";
import type { Logger } from "pino";
import type { AppEnv } from "./env.ts";

export interface HealthServer {
  /** `http://host:port` it listens on. */
  url: string;
  close(): Promise<void>;
}

/**
 * A worker's small HTTP port: only the routes it is given (the API's own health routes, so /readyz means
 * the same on both roles), no auth, no API. Orchestrators probe it; nothing else should reach it.
 */
export async function startHealthServer(opts: {
  port: number;
  host: string;
  log: Logger;
  routes: Hono<AppEnv>;
}): Promise<HealthServer> {
  const app = new Hono<AppEnv>();
  // The health routes log why a check failed on the request's logger.
  app.use(async (c, next) => {
    c.set("log", opts.log);
    await next();
  });
  app.route("/", opts.routes);
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: opts.port, hostname: opts.host }, () => resolve(s));
    s.once("error", reject);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${address.port}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Probes hold keep-alive connections; close() alone would wait for them to time out.
        if ("closeAllConnections" in server) server.closeAllConnections();
      }),
  };
}
