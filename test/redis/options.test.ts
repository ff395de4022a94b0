import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { redisClientOptions } from "../../src/redis/options.ts";
import { explain } from "../../src/redis/start-check.ts";

const dir = mkdtempSync(join(tmpdir(), "parley-redis-options-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pem = join(dir, "ca.pem");
writeFileSync(pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");

describe("redisClientOptions", () => {
  it("takes host, port, user, password and database from REDIS_URL, decoded", () => {
    const options = redisClientOptions(loadConfig({ REDIS_URL: "redis://app:p%40ss@redis.internal:6380/3", REDIS_CONNECT_TIMEOUT_MS: "1500" }));
    expect(options).toMatchObject({ host: "redis.internal", port: 6380, username: "app", password: "p@ss", db: 3, connectTimeout: 1500 });
    expect(options.tls).toBeUndefined();
    expect(redisClientOptions(loadConfig({ REDIS_URL: "redis://[::1]" }))).toMatchObject({ host: "::1", port: 6379, db: undefined });
  });

  it("turns rediss:// into TLS with the CA file, the name to check, and verification on by default", () => {
    const options = redisClientOptions(loadConfig({ REDIS_URL: "rediss://10.0.0.5:6380", REDIS_TLS_CA_FILE: pem, REDIS_TLS_SERVERNAME: "redis.example" }));
    expect(options.tls).toMatchObject({ servername: "redis.example", rejectUnauthorized: true });
    expect(String(options.tls?.ca)).toContain("BEGIN CERTIFICATE");
    expect(redisClientOptions(loadConfig({ REDIS_URL: "rediss://h", REDIS_TLS_REJECT_UNAUTHORIZED: "false" })).tls).toEqual({ rejectUnauthorized: false });
  });

  it("stops on a CA file it cannot read, or one that holds no certificate, naming the setting and the path", () => {
    const missing = loadConfig({ REDIS_URL: "rediss://h", REDIS_TLS_CA_FILE: join(dir, "nowhere.pem") });
    expect(() => redisClientOptions(missing)).toThrow(ConfigError);
    expect(() => redisClientOptions(missing)).toThrow(/REDIS_TLS_CA_FILE: cannot read '.*nowhere\.pem' \(ENOENT\)/);
    const notPem = join(dir, "key-only.pem");
    writeFileSync(notPem, "hello");
    expect(() => redisClientOptions(loadConfig({ REDIS_URL: "rediss://h", REDIS_TLS_CA_FILE: notPem }))).toThrow(/REDIS_TLS_CA_FILE: .* holds no PEM certificate/);
  });

  it("asks the Sentinels for the master, with the URL's credentials for the master and TLS for both under rediss://", () => {
    const plain = redisClientOptions(loadConfig({ REDIS_URL: "redis://:pw@ignored:1/2", REDIS_SENTINELS: "s1:26380, [fd00::1]:26381,s3", REDIS_SENTINEL_NAME: "mymaster", REDIS_SENTINEL_PASSWORD: "spw" }));
    expect(plain).toMatchObject({
      sentinels: [{ host: "s1", port: 26380 }, { host: "fd00::1", port: 26381 }, { host: "s3", port: 26379 }],
      name: "mymaster",
      password: "pw",
      db: 2,
      sentinelPassword: "spw",
      failoverDetector: true,
    });
    expect(plain.host).toBeUndefined();
    expect(plain.tls).toBeUndefined();
    const tls = redisClientOptions(loadConfig({ REDIS_URL: "rediss://x", REDIS_SENTINELS: "s1:26380", REDIS_SENTINEL_NAME: "m", REDIS_TLS_CA_FILE: pem }));
    expect(tls).toMatchObject({ enableTLSForSentinelMode: true });
    expect(tls.sentinelTLS).toBe(tls.tls);
  });
});

describe("Redis settings", () => {
  it.each([
    ["a scheme Redis does not speak", { REDIS_URL: "http://h:6379" }, "REDIS_URL: must start with redis:// or rediss://"],
    ["a TLS setting beside a plain URL", { REDIS_URL: "redis://h", REDIS_TLS_CA_FILE: "/ca.pem" }, "REDIS_TLS_CA_FILE: needs a rediss:// REDIS_URL"],
    ["a client certificate without its key", { REDIS_URL: "rediss://h", REDIS_TLS_CERT_FILE: "/c.pem" }, "REDIS_TLS_KEY_FILE: REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"],
    ["Sentinels without the master's name", { REDIS_SENTINELS: "s1:26379" }, "REDIS_SENTINEL_NAME: is needed with REDIS_SENTINELS"],
    ["a Sentinel address that is not host:port", { REDIS_SENTINELS: "s1:port", REDIS_SENTINEL_NAME: "m" }, "REDIS_SENTINELS[0]: 's1:port' is not host:port"],
    ["a master name without Sentinels", { REDIS_SENTINEL_NAME: "m" }, "REDIS_SENTINEL_NAME: is only used with REDIS_SENTINELS"],
    ["a cluster node that is not host:port", { REDIS_CLUSTER_NODES: "n1" }, "REDIS_CLUSTER_NODES[0]: is not host:port"],
    ["a cluster beside Sentinels", { REDIS_CLUSTER_NODES: "n1:7000", REDIS_SENTINELS: "s:26379", REDIS_SENTINEL_NAME: "m" }, "REDIS_SENTINELS: cannot go with REDIS_CLUSTER_NODES"],
    ["a database number on a cluster", { REDIS_CLUSTER_NODES: "n1:7000", REDIS_URL: "redis://h:7000/2" }, "REDIS_URL: names a database, which a Redis Cluster does not have"],
  ])("refuses %s, naming the variable", (_, env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe("what start says about a Redis it cannot use", () => {
  const tlsError = (code: string) => Object.assign(new Error("x"), { code });
  const direct = { sentinel: false, timedOut: false };
  it.each([
    [[tlsError("DEPTH_ZERO_SELF_SIGNED_CERT")], "Redis TLS: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT) — set REDIS_TLS_CA_FILE", false],
    [[tlsError("UNABLE_TO_VERIFY_LEAF_SIGNATURE")], "set REDIS_TLS_CA_FILE", false],
    [[tlsError("ERR_TLS_CERT_ALTNAME_INVALID")], "set REDIS_TLS_SERVERNAME", false],
    [[new Error("WRONGPASS invalid username-password pair or user is disabled.")], "(WRONGPASS) — check the credentials in REDIS_URL", false],
    [[new Error("NOAUTH Authentication required.")], "(NOAUTH) — put it in REDIS_URL", false],
    [[new Error("READONLY You can't write against a read only replica.")], "read-only replica (READONLY)", false],
    [[tlsError("ECONNREFUSED"), new Error("Connection is closed.")], "not reachable (ECONNREFUSED) — check the host and port", true],
    [[new Error("Connection is closed.")], "check the scheme (rediss:// for a TLS port", true],
  ])("%#: names the cause and the setting", (errors, message, transient) => {
    const failure = explain(errors, direct);
    expect(failure.message).toContain(message);
    expect(failure.transient).toBe(transient);
  });

  it("tells an unknown master name from Sentinels that do not answer", () => {
    const sentinel = { sentinel: true, timedOut: false };
    expect(explain([new Error("failed to connect to sentinel 10.0.0.1:26379 because ERR No such master with that name")], sentinel)).toEqual({
      transient: false,
      message: expect.stringContaining("know no master named REDIS_SENTINEL_NAME"),
    });
    const down = explain([new Error("failed to connect to sentinel 10.0.0.1:26379 because connect ECONNREFUSED 10.0.0.1:26379")], sentinel);
    expect(down).toEqual({ transient: true, message: expect.stringContaining("no Sentinel in REDIS_SENTINELS answered (ECONNREFUSED)") });
    // Addresses stay out of what is printed and logged.
    expect(down.message).not.toContain("10.0.0.1");
  });
});
