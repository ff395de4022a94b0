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

/** A redis-server (or Sentinel) run with the arguments given, in the foreground; `stop()` SIGKILLs it. */
export interface RedisProcess {
  stop(): Promise<void>;
  output(): string;
}

/**
 * Starts `redis-server <args>` and waits (bounded) until it has printed `readyText` ("Ready to accept
 * connections", or "+monitor master" for a Sentinel): a TLS-only server cannot be PINGed in plain text.
 */
export async function startRedisProcess(args: string[], readyText: string, timeoutMs = 20_000): Promise<RedisProcess> {
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d) => (out += d));
  child.stderr?.on("data", (d) => (out += d));
  const exited = once(child, "exit");
  process.once("exit", () => child.kill("SIGKILL"));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGKILL");
    await exited;
  };
  const deadline = Date.now() + timeoutMs;
  while (!out.includes(readyText)) {
    if (child.exitCode !== null) throw new Error(`redis-server ${args.join(" ")} exited ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server ${args.join(" ")} printed no "${readyText}" within ${timeoutMs} ms:\n${out}`);
    }
    await sleep(50);
  }
  return { stop, output: () => out };
}
