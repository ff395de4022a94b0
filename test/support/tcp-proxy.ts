import { connect, createServer, type Server, type Socket } from "node:net";
import { once } from "node:events";

/**
 * A TCP proxy to a real server that a test can cut, black-hole and restore,
 * to play a dependency going down (or silent) and coming back without
 * disturbing the shared one.
 */
export async function startTcpProxy(firstTarget: { host: string; port: number }) {
  let target = firstTarget;
  const sockets = new Set<Socket>();
  /** Pairs whose bytes are being held back while black-holed. */
  const paused = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  let blackholed = false;

  async function listen() {
    server = createServer((client) => {
      const upstream = connect(target.port, target.host);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("close", () => {
          sockets.delete(s);
          paused.delete(s);
        });
        s.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
      // After pipe(), which would resume a socket paused before it.
      if (blackholed) {
        for (const s of [client, upstream]) {
          s.pause();
          paused.add(s);
        }
      }
    });
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as { port: number }).port;
  }
  await listen();

  return {
    /** False while cut (until `restore()`). */
    get listening() {
      return server?.listening ?? false;
    },
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
    /**
     * A partition: connections stay open (and new ones are accepted) but no byte
     * passes either way, as when packets are dropped; nothing is refused or reset.
     */
    blackhole() {
      blackholed = true;
      for (const s of sockets) {
        s.pause();
        paused.add(s);
      }
    },
    /** Ends a black hole: what was held back is delivered, as after a healed partition. */
    heal() {
      blackholed = false;
      for (const s of paused) s.resume();
      paused.clear();
    },
    /** New connections go to `to` (a DNS name moved to another server); open ones stay where they are. */
    retarget(to: { host: string; port: number }) {
      target = to;
    },
    /** Cuts every open connection but keeps listening (a dependency restarted in place). */
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      blackholed = false;
      const closing = new Promise((r) => server?.close(r));
      for (const s of sockets) s.destroy();
      await closing;
    },
  };
}

export type TcpProxy = Awaited<ReturnType<typeof startTcpProxy>>;

const DEFAULT_PORTS: Record<string, number> = { "postgres:": 5432, "postgresql:": 5432, "redis:": 6379 };

/** A proxy in front of the server a postgres:// or redis:// URL names, and that URL pointed through the proxy. */
export async function startTcpProxyFor(url: string): Promise<{ proxy: TcpProxy; url: string }> {
  const direct = new URL(url);
  const port = Number(direct.port || DEFAULT_PORTS[direct.protocol]);
  if (!port) throw new Error(`no port in ${direct.protocol} URL and no default known for it`);
  const proxy = await startTcpProxy({ host: direct.hostname, port });
  return { proxy, url: Object.assign(new URL(url), { hostname: "127.0.0.1", port: String(proxy.port) }).toString() };
}
