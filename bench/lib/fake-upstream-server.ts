import { startFakeUpstream } from "../../test/support/fake-upstream.ts";

// The benchmark's upstream, in a process of its own: every request's pacing comes
// from its model name (`bench-<ttftMs>-<tokenDelayMs>-<tokens>[-stamp]`).
const upstream = await startFakeUpstream({ port: Number(process.argv[2] ?? 0), behaviourFromModel: true, record: false });
console.log(JSON.stringify({ baseURL: upstream.baseURL }));
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => void upstream.close().then(() => process.exit(0)));
}
