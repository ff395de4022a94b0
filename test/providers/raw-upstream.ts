import { createServer, type ServerResponse } from "node:http";
import { listenOnLoopback } from "../support/loopback-server.ts";

/**
 * An upstream that writes exactly the bytes a test gives it, in the parts it
 * gives, with a pause between parts so each arrives in a read of its own
 * (loopback, no Nagle): for testing how Parley reads what servers really send.
 */
export interface RawAnswer {
  status?: number;
  headers?: Record<string, string>;
  parts: (string | Uint8Array)[];
  /** Pause between parts; default 1 ms. */
  delayMs?: number;
  /** Keep the response open after the last part, until the client leaves or the server closes. */
  hangAfter?: boolean;
}

export interface RawUpstream {
  baseURL: string;
  /** The answer to every request from now on. */
  answer(a: RawAnswer): void;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `bytes` cut at the given offsets (sorted, inside the array). */
export function splitAt(bytes: Uint8Array, ...offsets: number[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const at of offsets) {
    parts.push(bytes.subarray(from, at));
    from = at;
  }
  parts.push(bytes.subarray(from));
  return parts;
}

/** `bytes` in pieces of `size`. */
export function piecesOf(bytes: Uint8Array, size: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return parts;
}

export async function startRawUpstream(): Promise<RawUpstream> {
  let standing: RawAnswer = { parts: [] };
  const server = createServer(async (req, res: ServerResponse) => {
    for await (const _ of req); // the request body is not looked at
    const a = standing;
    res.writeHead(a.status ?? 200, { "content-type": "text/event-stream", ...a.headers });
    res.flushHeaders();
    for (const [i, part] of a.parts.entries()) {
      if (i > 0 || a.delayMs) await sleep(a.delayMs ?? 1);
      if (res.destroyed) return;
      res.write(part);
    }
    if (!a.hangAfter) res.end();
  });
  const { port, close } = await listenOnLoopback(server, { noDelay: true });
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    answer: (a) => void (standing = a),
    close,
  };
}
