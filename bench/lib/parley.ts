import { startChild, type Child } from "./processes.ts";
import { freePort } from "../../test/support/processes.ts";

/** Parley's processes for one setup: N API processes (load is spread over their URLs) and M workers. */
export interface ParleyProcesses {
  apiUrls: string[];
  apiPids: number[];
  workerPids: number[];
  children: Child[];
  stop(): Promise<void>;
}

/** Starts `api` API and `workers` worker processes of `dist/main.js` (what `npm start` runs) with `env`, each waiting until it says it is ready. */
export async function startParley(opts: {
  api: number;
  workers: number;
  env: Record<string, string>;
  /** Names the processes in errors (`<label>api-0`). */
  label?: string;
  nodeFlags: (role: string) => string[];
}): Promise<ParleyProcesses> {
  const label = opts.label ?? "";
  const started: ParleyProcesses = {
    apiUrls: [],
    apiPids: [],
    workerPids: [],
    children: [],
    async stop() {
      for (const c of [...started.children].reverse()) await c.stop().catch(() => {});
      started.children.length = 0;
    },
  };
  try {
    for (let i = 0; i < opts.api; i++) {
      const port = await freePort();
      const api = await startChild(`${label}api-${i}`, ["dist/main.js"], {
        env: { ...opts.env, ROLE: "api", PORT: String(port) },
        ready: "api listening",
        nodeFlags: opts.nodeFlags("api"),
      });
      started.children.push(api);
      started.apiUrls.push(`http://127.0.0.1:${port}/v1`);
      started.apiPids.push(api.pid);
    }
    for (let i = 0; i < opts.workers; i++) {
      const worker = await startChild(`${label}worker-${i}`, ["dist/main.js"], {
        env: { ...opts.env, ROLE: "worker", WORKER_CONCURRENCY: String(Math.ceil(1_200 / opts.workers)) },
        ready: "worker started",
        nodeFlags: opts.nodeFlags("worker"),
      });
      started.children.push(worker);
      started.workerPids.push(worker.pid);
    }
  } catch (err) {
    await started.stop();
    throw err;
  }
  return started;
}
