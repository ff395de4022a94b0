/**
 * Preloaded (NODE_OPTIONS=--import) into a Parley process by tests of its
 * crash handling: on SIGUSR2 it fails the way CRASH_WITH says, with
 * CRASH_SECRET in what it throws. Nothing in Parley listens for SIGUSR2.
 */
const secret = process.env.CRASH_SECRET ?? "";
const crashes: Record<string, () => void> = {
  exception: () => {
    throw new Error(`Failed query: insert into messages params: ${secret}`, { cause: new Error(`upstream said ${secret}`) });
  },
  rejection: () => void Promise.reject(new Error(`upstream said: Incorrect API key provided: ${secret}`)),
  "thrown-string": () => {
    throw `a plain string holding ${secret}`;
  },
};
process.on("SIGUSR2", () => setImmediate(crashes[process.env.CRASH_WITH ?? ""] ?? (() => {})));
