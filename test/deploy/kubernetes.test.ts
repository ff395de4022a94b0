import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { configSchema, loadConfig } from "../../src/config.ts";
import { COMPLETIONS_QUEUE } from "../../src/queue/completions.ts";
import { assertTool, requiredTool } from "./tools.ts";

/**
 * deploy/k8s rendered by `kubectl kustomize` (no cluster), each object checked against the Kubernetes (and
 * KEDA) schemas of the @kubernetes-models packages, then against what Parley itself says: its settings,
 * ports, health paths, drain bound and queue keys. Those schemas check types, required fields and enums,
 * not unknown fields, so the fields that matter are asserted by name here too.
 */

const root = fileURLToPath(new URL("../..", import.meta.url));
const INSTALL = "apt-get install -y kubernetes-client";
const kubectl = requiredTool("kubectl", ["version", "--client"], INSTALL);

type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> };

async function modelFor(apiVersion: string, kind: string) {
  const module = apiVersion.startsWith("keda.sh/") ? `@kubernetes-models/keda/${apiVersion}` : `kubernetes-models/${apiVersion}`;
  const Model = (await import(module))[kind];
  if (!Model) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return Model as new (data: unknown) => { validate(): void };
}

/** Kubernetes memory quantities as bytes (the suffixes used here). */
const bytes = (q: string): number => {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(q);
  if (!m) throw new Error(`unexpected quantity ${q}`);
  return Number(m[1]) * { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, "": 1 }[m[2] ?? ""]!;
};

describe.skipIf(kubectl.skip)("the Kubernetes manifests (deploy/k8s)", () => {
  let objects: Obj[] = [];
  const find = (kind: string, name: string): Obj => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    if (!o) throw new Error(`no ${kind} ${name} rendered`);
    return o;
  };
  let settings: Record<string, string> = {};

  beforeAll(() => {
    assertTool(kubectl, "kubectl", INSTALL);
    const rendered = execFileSync("kubectl", ["kustomize", "deploy/k8s"], { cwd: root, encoding: "utf8" });
    objects = parseAllDocuments(rendered).map((d) => d.toJS() as Obj);
    const configMap = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("parley-"));
    settings = configMap?.data ?? {};
  });

  it("render every object, each valid against its schema", async () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, "")}`).sort()).toEqual([
      "ConfigMap/parley",
      "Deployment/parley-api",
      "Deployment/parley-worker",
      "HorizontalPodAutoscaler/parley-api",
      "Job/parley-migrate",
      "PodDisruptionBudget/parley-api",
      "PodDisruptionBudget/parley-worker",
      "ScaledObject/parley-worker",
      "Service/parley-api",
      "TriggerAuthentication/parley-redis",
    ]);
    for (const o of objects) {
      const Model = await modelFor(o.apiVersion, o.kind);
      expect(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    }
  });

  it("set only Parley's own settings, and ones it accepts", () => {
    const known = new Set(Object.keys(configSchema.shape));
    expect(Object.keys(settings).filter((k) => !known.has(k))).toEqual([]);
    for (const name of ["parley-api", "parley-worker"]) {
      const container = find("Deployment", name).spec.template.spec.containers[0];
      const env = Object.fromEntries(container.env.filter((e: any) => "value" in e).map((e: any) => [e.name, e.value]));
      expect(() => loadConfig({ ...settings, ...env, DATABASE_URL: "postgres://h/db", REDIS_URL: "redis://h:6379" })).not.toThrow();
    }
  });

  it("take secrets from the Secret `parley` only, by Parley's own setting names (none filled in)", () => {
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
    const known = new Set(Object.keys(configSchema.shape));
    for (const name of ["parley-api", "parley-worker"]) {
      for (const e of find("Deployment", name).spec.template.spec.containers[0].env.filter((e: any) => e.valueFrom)) {
        expect(e.valueFrom.secretKeyRef.name).toBe("parley");
        expect(known.has(e.valueFrom.secretKeyRef.key), e.valueFrom.secretKeyRef.key).toBe(true);
      }
    }
  });

  it("probe /healthz (liveness, startup) and /readyz (readiness) on the ports each role answers on", () => {
    const api = find("Deployment", "parley-api").spec.template.spec.containers[0];
    const worker = find("Deployment", "parley-worker").spec.template.spec.containers[0];
    const portOf = (c: any, p: string | number) => (typeof p === "number" ? p : c.ports.find((x: any) => x.name === p).containerPort);
    const apiPort = Number(api.env.find((e: any) => e.name === "PORT").value);
    for (const [c, port] of [[api, apiPort], [worker, Number(settings.WORKER_HEALTH_PORT)]] as const) {
      expect(port).toBeGreaterThan(0);
      for (const probe of ["startupProbe", "livenessProbe"]) {
        expect(c[probe].httpGet.path).toBe("/healthz");
        expect(portOf(c, c[probe].httpGet.port)).toBe(port);
      }
      expect(c.readinessProbe.httpGet.path).toBe("/readyz");
      expect(portOf(c, c.readinessProbe.httpGet.port)).toBe(port);
    }
    const service = find("Service", "parley-api");
    expect(find("Deployment", "parley-api").spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(portOf(api, service.spec.ports[0].targetPort)).toBe(apiPort);
  });

  it("give each pod a grace period above the drain bound (and the API's preStop pause)", () => {
    const drainMs = configSchema.shape.SHUTDOWN_TIMEOUT_MS.parse(settings.SHUTDOWN_TIMEOUT_MS);
    for (const name of ["parley-api", "parley-worker"]) {
      const pod = find("Deployment", name).spec.template.spec;
      const preStop = pod.containers[0].lifecycle?.preStop?.exec?.command;
      const pauseMs = preStop ? Number(preStop[1]) * 1000 : 0;
      expect(pod.terminationGracePeriodSeconds * 1000, name).toBeGreaterThan(drainMs + pauseMs);
    }
  });

  it("run as a non-root user, read-only, with requests at least the bench's peak RSS (~250 MB)", () => {
    for (const o of [find("Deployment", "parley-api"), find("Deployment", "parley-worker"), find("Job", "parley-migrate")]) {
      const pod = o.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).not.toBe(0);
      const c = pod.containers[0];
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
      expect(c.image).toMatch(/parley:/);
      if (o.kind === "Deployment") {
        expect(bytes(c.resources.requests.memory)).toBeGreaterThanOrEqual(250 * 10 ** 6);
        expect(bytes(c.resources.limits.memory)).toBeGreaterThan(bytes(c.resources.requests.memory));
        expect(c.resources.requests.cpu).toBeDefined();
        // The autoscalers own the counts.
        expect(o.spec.replicas).toBeUndefined();
      }
    }
  });

  it("migrate in a Job with the migration CLI, and not again in the pods", () => {
    const job = find("Job", "parley-migrate").spec.template.spec;
    expect(job.containers[0].command).toEqual(["node", "dist/cli/migrate.js"]);
    expect(existsSync(`${root}/src/cli/migrate.ts`)).toBe(true);
    expect(job.restartPolicy).toBe("Never");
    expect(settings.MIGRATE_ON_START).toBe("false");
  });

  it("scale the API on CPU, and workers with KEDA on the BullMQ queue's own keys", () => {
    const hpa = find("HorizontalPodAutoscaler", "parley-api");
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "parley-api" });
    const scaled = find("ScaledObject", "parley-worker");
    expect(scaled.spec.scaleTargetRef.name).toBe("parley-worker");
    const queue = `${settings.REDIS_PREFIX}:${COMPLETIONS_QUEUE}`;
    const triggers = scaled.spec.triggers.map((t: any) => [t.type, t.metadata.listName, Number(t.metadata.listLength)]);
    expect(triggers.map((t: any) => t.slice(0, 2))).toEqual([["redis", `${queue}:wait`], ["redis", `${queue}:active`]]);
    // Running jobs per worker at the target stay below what one worker runs at once.
    expect(triggers[1][2]).toBeLessThan(Number(settings.WORKER_CONCURRENCY));
    for (const t of scaled.spec.triggers) find("TriggerAuthentication", t.authenticationRef.name);
  });
});
