import { connect, createServer, type Server, type Socket } from "node:net";
import { once } from "node:events";

/**
 * A TCP proxy to a real server that a test can cut and restore, to play a
 * dependency going down and coming back without disturbing the shared one.
 */
export async function startTcpProxy(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;

  async function listen() {
    server = createServer((client) => {
      const upstream = connect(target.port, target.host);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as { port: number }).port;
  }
  await listen();

  return {
    get port() {
      return port;
    },
    /** Refuses new connections and cuts the open ones. */
    async cut() {
      const closing = new Promise((r) => server?.close(r));
      for (const s of sockets) s.destroy();
      await closing;
    },
    /** Listens again on the same port. */
    restore: listen,
  };
}
