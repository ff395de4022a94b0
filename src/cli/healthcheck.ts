import { loadConfig } from "../config.ts";

/**
 * The image's HEALTHCHECK: asks this container's own process whether it is ready, on the port its ROLE
 * answers on (the API's PORT; a worker's WORKER_HEALTH_PORT). Exit 0 ready, 1 not. The image has node
 * but no curl, and one script keeps the choice of port with the settings that decide it.
 */
const config = loadConfig();
const port = config.ROLE === "worker" ? config.WORKER_HEALTH_PORT : config.PORT;
if (port === 0) {
  console.error("parley healthcheck: ROLE=worker with WORKER_HEALTH_PORT=0 has no port to ask");
  process.exit(1);
}
try {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2500) });
  if (!res.ok) console.error(`parley healthcheck: /readyz answered ${res.status}`);
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`parley healthcheck: ${(err as Error).message}`);
  process.exit(1);
}
