import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";

describe("configuration", () => {
  it("refuses a stalled-job check longer than the job lock, naming the variable", () => {
    expect(() => loadConfig({ WORKER_LOCK_MS: "2000", WORKER_STALLED_CHECK_MS: "5000" })).toThrow(ConfigError);
    expect(() => loadConfig({ WORKER_LOCK_MS: "2000", WORKER_STALLED_CHECK_MS: "5000" })).toThrow(/WORKER_STALLED_CHECK_MS: must not be longer than WORKER_LOCK_MS/);
  });

  it("takes a recovery window whose check is within the lock", () => {
    const config = loadConfig({ WORKER_LOCK_MS: "3000", WORKER_STALLED_CHECK_MS: "1000" });
    expect([config.WORKER_LOCK_MS, config.WORKER_STALLED_CHECK_MS]).toEqual([3000, 1000]);
    expect(loadConfig({}).WORKER_STALLED_CHECK_MS).toBeLessThanOrEqual(loadConfig({}).WORKER_LOCK_MS);
  });

  it("bounds how long a follower waits on a stalled reply", () => {
    expect(loadConfig({}).REPLY_STALL_CHECK_MS).toBe(5000);
    expect(() => loadConfig({ REPLY_STALL_CHECK_MS: "10" })).toThrow(/REPLY_STALL_CHECK_MS/);
  });

  describe("CORS_ORIGINS", () => {
    it.each([
      ["a path", "https://app.example.com/", "https://app.example.com/"],
      ["no scheme", "app.example.com", "app.example.com"],
      ["* among origins", "*,https://app.example.com", "*"],
      ["another scheme", "ftp://app.example.com", "ftp://app.example.com"],
      ["upper case (browsers send origins lower-cased)", "https://App.example.com", "https://App.example.com"],
    ])("refuses %s, naming the variable and the value", (_, value, bad) => {
      expect(() => loadConfig({ CORS_ORIGINS: value })).toThrow(ConfigError);
      expect(() => loadConfig({ CORS_ORIGINS: value })).toThrow(`CORS_ORIGINS[0]: '${bad}' is not an origin`);
    });

    it("takes *, or exact origins with spaces around commas", () => {
      expect(loadConfig({ CORS_ORIGINS: "*" }).CORS_ORIGINS).toEqual(["*"]);
      expect(loadConfig({ CORS_ORIGINS: "https://a.example.com, http://localhost:5173" }).CORS_ORIGINS).toEqual([
        "https://a.example.com",
        "http://localhost:5173",
      ]);
      expect(loadConfig({}).CORS_ORIGINS).toBeUndefined();
    });
  });
});
