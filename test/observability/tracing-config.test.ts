import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { parseOtlpHeaders, tracesUrl } from "../../src/observability/tracing.ts";

describe("trace settings", () => {
  it("are off by default", () => {
    expect(tracesUrl(loadConfig({}))).toBeNull();
  });

  it("send to <endpoint>/v1/traces, or to the traces endpoint as given, which wins", () => {
    expect(tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }))).toBe("http://collector:4318/v1/traces");
    expect(tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/base" }))).toBe("http://collector:4318/base/v1/traces");
    expect(
      tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://other:4318/custom" })),
    ).toBe("http://other:4318/custom");
  });

  it("are off with OTEL_SDK_DISABLED=true whatever the endpoint", () => {
    expect(tracesUrl(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "true" }))).toBeNull();
  });

  it("refuse an endpoint that is not a URL and a sampler ratio outside 0..1, naming the variable", () => {
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT/);
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER_ARG: "2" })).toThrow(ConfigError);
  });

  it("read OTEL_EXPORTER_OTLP_HEADERS as key=value pairs, values URL-decoded", () => {
    expect(parseOtlpHeaders("authorization=Bearer%20abc, x-team = parley ,broken")).toEqual({ authorization: "Bearer abc", "x-team": "parley" });
    expect(parseOtlpHeaders(undefined)).toEqual({});
  });
});
