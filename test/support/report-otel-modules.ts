import { registerHooks } from "node:module";

/**
 * Loaded with `--import` into a spawned Parley: prints `loaded-module <url>` for every OpenTelemetry
 * module the process resolves, so a test can tell whether the SDK was loaded at all.
 */
registerHooks({
  resolve(specifier, context, next) {
    const resolved = next(specifier, context);
    if (resolved.url.includes("/node_modules/@opentelemetry/")) process.stderr.write(`loaded-module ${resolved.url}\n`);
    return resolved;
  },
});
