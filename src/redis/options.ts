import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type { RedisOptions } from "ioredis";
import { ConfigError, type Config } from "../config.ts";

/** The settings a connection to Redis is made from. */
export type RedisConnectionConfig = Pick<
  Config,
  | "REDIS_URL"
  | "REDIS_CONNECT_TIMEOUT_MS"
  | "REDIS_TLS_CA_FILE"
  | "REDIS_TLS_CERT_FILE"
  | "REDIS_TLS_KEY_FILE"
  | "REDIS_TLS_SERVERNAME"
  | "REDIS_TLS_REJECT_UNAUTHORIZED"
  | "REDIS_SENTINELS"
  | "REDIS_SENTINEL_NAME"
  | "REDIS_SENTINEL_USERNAME"
  | "REDIS_SENTINEL_PASSWORD"
>;

/**
 * Everything ioredis needs to reach the configured Redis: the URL's host, port, user, password and
 * database, TLS when the URL is rediss://, or the master a Sentinel group names. Callers add what
 * their role needs (retries, timeouts) on top. Reads the TLS files, so a missing one stops start.
 */
export function redisClientOptions(config: RedisConnectionConfig): RedisOptions {
  const url = new URL(config.REDIS_URL);
  const tls = url.protocol === "rediss:" ? tlsOptions(config) : undefined;
  const common: RedisOptions = {
    username: decodeURIComponent(url.username) || undefined,
    password: decodeURIComponent(url.password) || undefined,
    db: databaseNumber(url),
    connectTimeout: config.REDIS_CONNECT_TIMEOUT_MS,
    // A primary demoted to a replica (a failover, a DNS name moved) answers writes with READONLY, having
    // run nothing: reconnect (to the new primary, through the Sentinels when there are) and send again.
    reconnectOnError: (err) => (err.message.startsWith("READONLY") ? 2 : false),
  };
  if (config.REDIS_SENTINELS) {
    return {
      ...common,
      sentinels: config.REDIS_SENTINELS,
      name: config.REDIS_SENTINEL_NAME,
      sentinelUsername: config.REDIS_SENTINEL_USERNAME,
      sentinelPassword: config.REDIS_SENTINEL_PASSWORD,
      // Without it a connection to a master that a failover demoted stays open; with it the
      // Sentinels' +switch-master moves every connection to the new master.
      failoverDetector: true,
      ...(tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
    };
  }
  return { ...common, host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(url.port || 6379), ...(tls ? { tls } : {}) };
}

function databaseNumber(url: URL): number | undefined {
  const path = url.pathname.replace(/^\//, "");
  return path === "" ? undefined : Number(path);
}

function tlsOptions(config: RedisConnectionConfig): ConnectionOptions {
  const tls: ConnectionOptions = { rejectUnauthorized: config.REDIS_TLS_REJECT_UNAUTHORIZED };
  if (config.REDIS_TLS_CA_FILE) tls.ca = readPem("REDIS_TLS_CA_FILE", config.REDIS_TLS_CA_FILE, "CERTIFICATE");
  if (config.REDIS_TLS_CERT_FILE) tls.cert = readPem("REDIS_TLS_CERT_FILE", config.REDIS_TLS_CERT_FILE, "CERTIFICATE");
  if (config.REDIS_TLS_KEY_FILE) tls.key = readPem("REDIS_TLS_KEY_FILE", config.REDIS_TLS_KEY_FILE, "PRIVATE KEY");
  if (config.REDIS_TLS_SERVERNAME) tls.servername = config.REDIS_TLS_SERVERNAME;
  return tls;
}

/** A PEM file's text; a file that cannot be read, or holds no such PEM block, is a ConfigError naming the setting. */
function readPem(setting: string, path: string, block: "CERTIFICATE" | "PRIVATE KEY"): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unreadable";
    throw new ConfigError(`${setting}: cannot read '${path}' (${code})`);
  }
  // "PRIVATE KEY" also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY".
  if (!new RegExp(`-----BEGIN [A-Z ]*${block}-----`).test(text)) {
    throw new ConfigError(`${setting}: '${path}' holds no PEM ${block.toLowerCase()} (-----BEGIN ${block}-----)`);
  }
  return text;
}
