import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface ListeningServer {
  port: number;
  /** Destroys every open connection (hanging and streaming requests too), then stops listening. */
  close(): Promise<void>;
}

/**
 * A test's HTTP server listening on 127.0.0.1 (`port` 0: any free one), its connections tracked so that
 * `close()` ends them instead of waiting for clients to leave. `noDelay` sends each write at once.
 */
export async function listenOnLoopback(server: Server, opts: { port?: number; noDelay?: boolean } = {}): Promise<ListeningServer> {
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    if (opts.noDelay) s.setNoDelay(true);
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(opts.port ?? 0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
