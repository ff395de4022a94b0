import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";
import { freePort } from "./processes.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A redis-server of a test's own (never the shared one), keeping nothing on
 * disk: `kill()` is a crash (SIGKILL), and `start()` brings it back on the
 * same port, empty.
 */
export interface OwnRedis {
  port: number;
  url: string;
  /** Whether the server process is up (started and not killed or exited). */
  readonly running: boolean;
  /** Starts the server (again) on its port and waits until it answers PING. */
  start(): Promise<void>;
  /** SIGKILL, as a crash; resolves once the process has exited. */
  kill(): Promise<void>;
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const kill = async () => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, "exit");
    running.kill("SIGKILL");
    await exited;
  };
  // A crashed test run must not leave servers behind.
  process.once("exit", () => child?.kill("SIGKILL"));
  const own: OwnRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== null && child.exitCode === null && child.signalCode === null;
    },
    async start() {
      await kill();
      child = spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--maxmemory-policy", "noeviction"],
        { stdio: "ignore" },
      );
      const deadline = Date.now() + 10_000;
      while (!(await answersPing(port))) {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
        await sleep(50);
      }
    },
    kill,
  };
  await own.start();
  return own;
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}
