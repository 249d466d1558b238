// The deploy files (deploy/) against the real CLI: every flag they pass must exist, their
// names, ports and paths must agree with each other, and a cluster started exactly as the
// systemd unit starts it (addresses moved to free 127.0.0.1 ports, paths to temp dirs) must
// elect a leader and serve etcdctl over mutual TLS. Docker and Kubernetes cannot run here,
// so their files are checked by reading them.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { freeBasePort } from "../apps/demo/test/ports.js";
import {
  cli,
  cliFlags,
  expandExecStart,
  flagsOf,
  flagValue,
  parseEnvFile,
  root,
  unitSection,
  varsOf,
} from "./deploy-cli.js";

const read = (path: string) => readFileSync(join(root, path), "utf8");
const portOf = (hostPort: string | undefined) => Number(hostPort?.slice(hostPort.lastIndexOf(":") + 1));
const hostOf = (hostPort: string | undefined) => hostPort?.slice(0, hostPort.lastIndexOf(":"));

/** The command-line words that must be `quorum node` flags. */
function expectKnownNodeFlags(words: readonly string[]): void {
  const known = cliFlags(["node"]);
  const unknown = flagsOf(words).filter((f) => !known.has(f));
  expect(unknown, `flags that \`quorum node --help\` does not list`).toEqual([]);
}

// ---- systemd ---------------------------------------------------------------------------

const unit = read("deploy/systemd/quorum.service");
const service = unitSection(unit, "Service");
const execStart = service.get("ExecStart")?.[0] ?? "";
const envFiles = readdirSync(join(root, "deploy/systemd"))
  .filter((f) => f.endsWith(".env"))
  .sort()
  .map((file) => ({ file, env: parseEnvFile(read(`deploy/systemd/${file}`)) }));

describe("deploy/systemd", () => {
  it("has one env file per node of a three-node cluster", () => {
    expect(envFiles.map((e) => e.file)).toEqual(["n1.env", "n2.env", "n3.env"]);
  });

  it("runs `quorum node` with flags the CLI has, each variable of the env files as its flag", () => {
    expect(service.get("ExecStart")).toHaveLength(1);
    expect(execStart.trim().split(/\s+/).slice(0, 3)).toEqual([
      "/usr/bin/node",
      "/opt/quorum/dist/cli.js",
      "node",
    ]);
    const words = execStart.trim().split(/\s+/);
    expectKnownNodeFlags(words);
    // QUORUM_LISTEN_CLIENT is the value of --listen-client, and so on: one rule, no table.
    for (const name of new Set(varsOf(execStart))) {
      if (words.includes(`\${${name}}`)) {
        const flag = `--${name
          .replace(/^QUORUM_/, "")
          .toLowerCase()
          .replaceAll("_", "-")}`;
        expect(words[words.indexOf(`\${${name}}`) - 1], `\${${name}} is the value of ${flag}`).toBe(flag);
      }
    }
    for (const { file, env } of envFiles) {
      expect([...env.keys()].sort(), `${file} sets exactly the variables ExecStart uses`).toEqual(
        [...new Set(varsOf(execStart))].sort(),
      );
    }
  });

  it("describes one cluster: same voters, token and settings; each node is its own entry", () => {
    const configs = envFiles.map(({ env }) => expandExecStart(execStart, env));
    const same = ["--initial-cluster", "--initial-cluster-token", "--consensus", "--shards"];
    for (const flag of same) {
      expect(new Set(configs.map((words) => flagValue(words, flag))).size, `${flag} agrees`).toBe(1);
    }
    const voters = flagValue(configs[0]!, "--initial-cluster")!
      .split(",")
      .map((entry) => entry.split("="));
    expect(voters.map(([name]) => name)).toEqual(configs.map((words) => flagValue(words, "--name")));
    for (const [i, words] of configs.entries()) {
      // A node's peers dial the address it is listed with, so it must listen there.
      expect(flagValue(words, "--listen-peer")).toBe(voters[i]![1]);
      // A follower forwards writes to the leader's --listen-client: a wildcard would point home.
      expect(hostOf(flagValue(words, "--listen-client"))).not.toMatch(/^(0\.0\.0\.0|\[::\])$/);
    }
  });

  it("restarts on failure but not on a configuration error, and is hardened", () => {
    expect(service.get("Restart")).toEqual(["on-failure"]);
    expect(service.get("RestartPreventExitStatus")).toEqual(["2"]); // the CLI's usage exit code
    expect(service.get("User")).toEqual(["quorum"]);
    expect(service.get("StateDirectory")).toEqual(["quorum"]);
    expect(flagValue(execStart.split(/\s+/), "--data-dir")).toBe("/var/lib/quorum");
    for (const setting of ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"]) {
      expect(service.get(setting), setting).toEqual(["yes"]);
    }
    expect(service.get("ProtectSystem")).toEqual(["strict"]);
    expect(service.get("CapabilityBoundingSet")).toEqual([""]);
    // Node.js cannot run without writable executable memory (V8's JIT).
    expect(service.has("MemoryDenyWriteExecute")).toBe(false);
  });

  it("exits with code 2, which the unit does not restart, on a configuration error", () => {
    const dir = mkdtempSync(join(tmpdir(), "quorum-deploy-exit2-"));
    try {
      const env = new Map(envFiles[0]!.env);
      env.set("QUORUM_CONSENSUS", "rafts"); // a typo in the env file
      const words = expandExecStart(execStart, env).map((word) =>
        word.replace(/^\/var\/lib\/quorum$/, dir).replace(/^\/opt\/quorum\/dist\/cli\.js$/, cli),
      );
      const run = spawnSync(process.execPath, words.slice(1), { encoding: "utf8", timeout: 10_000 });
      expect(run.stderr).toMatch(/--consensus: "rafts" is not one of raft, paxos/);
      expect(run.status).toBe(Number(service.get("RestartPreventExitStatus")![0]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("a cluster started from quorum.service and n1..n3.env", () => {
    let dir: string;
    const nodes: { name: string; proc: ChildProcess; log: string[]; exit: Promise<number | null> }[] = [];
    const clients: string[] = [];
    const metrics: string[] = [];
    let tlsDir: string;

    function etcdctl(endpoints: string[], tls: boolean, ...args: string[]) {
      const flags = tls
        ? ["--cacert", `${tlsDir}/ca.crt`, "--cert", `${tlsDir}/client.crt`, "--key", `${tlsDir}/client.key`]
        : [];
      return spawnSync(
        "etcdctl",
        ["--endpoints", endpoints.join(","), "--command-timeout=3s", ...flags, ...args],
        {
          encoding: "utf8",
          env: { ...process.env, ETCDCTL_API: "3" },
        },
      );
    }

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "quorum-deploy-systemd-"));
      tlsDir = join(dir, "tls");
      // The certificates come from the script the README tells operators to use.
      const makeCerts = join(root, "deploy/tls/make-certs.sh");
      for (const { env } of envFiles) {
        execFileSync(makeCerts, [tlsDir, env.get("QUORUM_NAME")!, "IP:127.0.0.1"], { stdio: "pipe" });
      }
      execFileSync(makeCerts, [tlsDir, "client"], { stdio: "pipe" });

      // Every distinct host:port of the env files (3 nodes x client, peer, metrics) moves to
      // a free 127.0.0.1 port, the same one wherever it appears.
      const base = await freeBasePort();
      const offsets = [0, 1, 2, 10, 11, 12, 20, 21, 22];
      const moved = new Map<string, string>();
      const move = (value: string) =>
        value.replace(/\b[\w.-]+:\d{2,5}\b/g, (hostPort) => {
          if (!moved.has(hostPort)) {
            if (moved.size === offsets.length) throw new Error(`more than 9 addresses: ${hostPort}`);
            moved.set(hostPort, `127.0.0.1:${base + offsets[moved.size]!}`);
          }
          return moved.get(hostPort)!;
        });
      for (const { env } of envFiles) {
        const local = new Map(
          [...env].map(([k, v]) => [k, /^QUORUM_(LISTEN_|INITIAL_CLUSTER$)/.test(k) ? move(v) : v]),
        );
        const name = local.get("QUORUM_NAME")!;
        const words = expandExecStart(execStart, local).map((word) =>
          word
            .replace(/^\/var\/lib\/quorum$/, join(dir, name))
            .replace(/^\/etc\/quorum\/tls\//, `${tlsDir}/`)
            .replace(/^\/opt\/quorum\/dist\/cli\.js$/, cli),
        );
        // Quieter than the files' info level; everything else is as systemd would run it.
        words[words.indexOf("--log-level") + 1] = "warn";
        clients.push(flagValue(words, "--listen-client")!);
        metrics.push(flagValue(words, "--listen-metrics")!);
        const proc = spawn(process.execPath, words.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
        const log: string[] = [];
        proc.stdout!.on("data", (d: Buffer) => log.push(d.toString()));
        proc.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
        const exit = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
        nodes.push({ name, proc, log, exit });
      }
      expect(moved.size).toBe(9);
    }, 30_000);

    afterAll(() => {
      for (const { proc } of nodes)
        if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    });

    async function health(address: string): Promise<number> {
      try {
        return (await fetch(`http://${address}/health`)).status;
      } catch {
        return 0;
      }
    }

    it("every node reports /health 200, and serves metrics", async () => {
      const deadline = Date.now() + 20_000;
      let statuses: number[] = [];
      // A node that exits (a bad flag: exit code 2) ends the wait at once, with its log.
      while (Date.now() < deadline && nodes.every((n) => n.proc.exitCode === null)) {
        statuses = await Promise.all(metrics.map(health));
        if (statuses.every((s) => s === 200)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const logs = nodes.map((n) => `--- ${n.name} (exit ${n.proc.exitCode})\n${n.log.join("")}`).join("\n");
      expect(statuses, `health of ${metrics.join(", ")}\n${logs}`).toEqual([200, 200, 200]);
      const text = await (await fetch(`http://${metrics[0]}/metrics`)).text();
      expect(text).toMatch(/^# HELP /m);
    }, 30_000);

    it("takes a put through one node and returns it from another, with a client certificate only", () => {
      // One retry is allowed: a leader change under a loaded machine is not what this tests.
      let put = etcdctl([clients[1]!], true, "put", "deploy/greeting", "hello from systemd");
      if (put.status !== 0)
        put = etcdctl([clients[1]!], true, "put", "deploy/greeting", "hello from systemd");
      expect({ status: put.status, stdout: put.stdout.trim() }, put.stderr).toEqual({
        status: 0,
        stdout: "OK",
      });
      const get = etcdctl([clients[2]!], true, "get", "deploy/greeting", "--print-value-only");
      expect(get.stdout.trim()).toBe("hello from systemd");
      const members = etcdctl([clients[0]!], true, "member", "list");
      for (const { name } of nodes) expect(members.stdout).toContain(`, ${name}, `);
      // The unit turns client TLS on: without a certificate the request fails.
      const plain = etcdctl([clients[0]!], false, "get", "deploy/greeting");
      expect(plain.status).not.toBe(0);
    }, 30_000);

    it("stops every node with SIGTERM (systemd's stop) and exit code 0", async () => {
      for (const { proc } of nodes) proc.kill("SIGTERM");
      const codes = await Promise.all(nodes.map((n) => n.exit));
      expect(codes).toEqual([0, 0, 0]);
    }, 30_000);
  });
});

// ---- Docker ----------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerfile(): Instruction[] {
  const lines = read("deploy/docker/Dockerfile")
    .split("\n")
    .filter((line) => !line.trim().startsWith("#"));
  return lines
    .join("\n")
    .replace(/\\\n/g, " ")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const match = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
      if (!match) throw new Error(`not an instruction: ${line}`);
      return { keyword: match[1]!, args: match[2]!.trim() };
    });
}

/** The runtime stage: the instructions after the last FROM. */
function runtimeStage(): Instruction[] {
  const all = dockerfile();
  const last = all.map((i) => i.keyword).lastIndexOf("FROM");
  return all.slice(last);
}

function jsonArray(stage: Instruction[], keyword: string): string[] {
  const found = stage.filter((i) => i.keyword === keyword);
  expect(found, `one ${keyword}`).toHaveLength(1);
  // The exec form (a JSON array): no shell between the container runtime and Node, so
  // SIGTERM reaches the node.
  return JSON.parse(found[0]!.args) as string[];
}

function healthcheckCommand(): string[] {
  const found = runtimeStage().filter((i) => i.keyword === "HEALTHCHECK");
  expect(found).toHaveLength(1);
  const cmd = /\bCMD\s+(\[.*\])$/.exec(found[0]!.args);
  expect(cmd, "HEALTHCHECK ... CMD [...]").not.toBeNull();
  return JSON.parse(cmd![1]!) as string[];
}

describe("deploy/docker", () => {
  it("runs `node /opt/quorum/dist/cli.js node` with flags the CLI has", () => {
    const stage = runtimeStage();
    const entrypoint = jsonArray(stage, "ENTRYPOINT");
    const cmd = jsonArray(stage, "CMD");
    expect(entrypoint).toEqual(["node", "/opt/quorum/dist/cli.js"]);
    expect(cmd[0]).toBe("node");
    expectKnownNodeFlags(cmd);
    // The CLI the entrypoint names is what the build stage deployed.
    expect(stage.some((i) => i.keyword === "COPY" && i.args === "--from=build /out /opt/quorum")).toBe(true);
    expect(dockerfile().some((i) => i.keyword === "RUN" && /deploy --prod .*\/out$/.test(i.args))).toBe(true);
    expect(dockerfile().some((i) => i.keyword === "RUN" && i.args.includes("--frozen-lockfile"))).toBe(true);
  });

  it("exposes the ports it listens on, keeps data in the volume, runs as a non-root user", () => {
    const stage = runtimeStage();
    const cmd = jsonArray(stage, "CMD");
    const ports = ["--listen-client", "--listen-peer", "--listen-metrics"].map((f) =>
      portOf(flagValue(cmd, f)),
    );
    const exposed = stage
      .find((i) => i.keyword === "EXPOSE")!
      .args.split(/\s+/)
      .map(Number);
    expect(exposed).toEqual(ports);
    expect(stage.find((i) => i.keyword === "VOLUME")?.args).toBe(flagValue(cmd, "--data-dir"));
    const user = stage.filter((i) => i.keyword === "USER").at(-1)?.args;
    expect(user).toBeDefined();
    expect(["root", "0"]).not.toContain(user!.split(":")[0]);
    // The health check asks the metrics listener for /health.
    const check = healthcheckCommand().join(" ");
    expect(check).toContain(`http://127.0.0.1:${portOf(flagValue(cmd, "--listen-metrics"))}/health`);
  });

  it("builds on the same Node.js in both stages (better-sqlite3 is a native module)", () => {
    const froms = dockerfile()
      .filter((i) => i.keyword === "FROM")
      .map((i) => i.args);
    const node = "node:$" + "{NODE_VERSION}"; // the Dockerfile's ARG, not a template string
    expect(froms).toEqual([`${node}-bookworm AS build`, `${node}-bookworm-slim`]);
  });

  // What the runtime image holds is what `pnpm deploy --prod` writes (its build stage's
  // last step, and the systemd install step). Without Docker, run that here and start the
  // image's CMD from it, moved to free 127.0.0.1 ports, as the container would.
  describe("the image's /opt/quorum and CMD, without Docker", () => {
    let dir: string;
    let proc: ChildProcess | undefined;
    let exit: Promise<number | null>;
    const log: string[] = [];
    let metrics = "";

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "quorum-deploy-image-"));
      const deployed = spawnSync(
        "pnpm",
        ["--filter", "@quorum/demo", "deploy", "--prod", "--offline", join(dir, "opt-quorum")],
        { cwd: root, encoding: "utf8", timeout: 120_000 },
      );
      expect(deployed.status, `pnpm deploy failed:\n${deployed.stdout}${deployed.stderr}`).toBe(0);
    }, 130_000);

    afterAll(() => {
      if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    });

    it("holds the CLI with its production dependencies only", () => {
      const help = (script: string) =>
        execFileSync(process.execPath, [script, "node", "--help"], { encoding: "utf8" });
      expect(help(join(dir, "opt-quorum/dist/cli.js"))).toBe(help(cli));
      const modules = readdirSync(join(dir, "opt-quorum/node_modules"));
      expect(modules).toContain("commander");
      expect(modules).not.toContain("playwright-core"); // a devDependency of @quorum/demo
    });

    it("runs the CMD until the HEALTHCHECK passes, and stops on SIGTERM with exit code 0", async () => {
      const stage = runtimeStage();
      const entrypoint = jsonArray(stage, "ENTRYPOINT");
      const base = await freeBasePort();
      let next = 0;
      const words = [...entrypoint, ...jsonArray(stage, "CMD")].map((word) =>
        word
          .replace(/^0\.0\.0\.0:(\d+)$/, () => `127.0.0.1:${base + next++}`)
          .replace(/^\/var\/lib\/quorum$/, join(dir, "data"))
          .replace(/^\/opt\/quorum\//, `${join(dir, "opt-quorum")}/`),
      );
      expect(next).toBe(3);
      metrics = flagValue(words, "--listen-metrics")!;
      // The HEALTHCHECK, pointed at the moved metrics port.
      const check = healthcheckCommand().map((word) => word.replace("127.0.0.1:2381", metrics));
      const healthy = () => spawnSync(process.execPath, check.slice(1), { timeout: 10_000 }).status;
      proc = spawn(process.execPath, words.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
      proc.stdout!.on("data", (d: Buffer) => log.push(d.toString()));
      proc.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
      exit = new Promise((resolve) => proc!.once("exit", (code) => resolve(code)));
      let status = healthy();
      for (
        const deadline = Date.now() + 15_000;
        status !== 0 && Date.now() < deadline && proc.exitCode === null;
      ) {
        await new Promise((r) => setTimeout(r, 200));
        status = healthy();
      }
      expect(status, `HEALTHCHECK never passed; the node's log:\n${log.join("")}`).toBe(0);
      // docker stop sends SIGTERM to the entrypoint's process: the exec form makes it Node.
      proc.kill("SIGTERM");
      expect(await exit).toBe(0);
      expect(healthy(), "the HEALTHCHECK fails once the node is gone").toBe(1);
    }, 40_000);
  });

  it("leaves local installs and builds out of the build context", () => {
    const ignored = read("deploy/docker/Dockerfile.dockerignore").split("\n");
    for (const pattern of ["**/node_modules", "**/dist", ".git"]) expect(ignored).toContain(pattern);
  });
});

// ---- Kubernetes ------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked field by field below
type Doc = any;
const manifests: Doc[] = parseAllDocuments(read("deploy/kubernetes/quorum.yaml")).map((doc) => {
  if (doc.errors.length > 0) throw new Error(`quorum.yaml: ${doc.errors[0]!.message}`);
  return doc.toJS();
});
const ofKind = (kind: string): Doc[] => manifests.filter((m) => m.kind === kind);

describe("deploy/kubernetes", () => {
  const sts = ofKind("StatefulSet")[0];
  const pod = sts?.spec.template.spec;
  const container = pod?.containers[0];
  const args: string[] = container?.args ?? [];
  const services = ofKind("Service");
  const headless = services.find((s) => s.spec.clusterIP === "None");
  const clientService = services.find((s) => s.spec.clusterIP !== "None");
  const containerPort = (name: string | number) =>
    typeof name === "number" ? name : container.ports.find((p: Doc) => p.name === name)?.containerPort;

  /** The args as the kubelet expands them for pod `i`: $(VAR) from the container's env. */
  function argsOfPod(i: number, namespace = "prod"): string[] {
    const values = new Map<string, string>();
    for (const env of container.env) {
      const field = env.valueFrom?.fieldRef?.fieldPath;
      if (field === "metadata.name") values.set(env.name, `${sts.metadata.name}-${i}`);
      else if (field === "metadata.namespace") values.set(env.name, namespace);
      else if (typeof env.value === "string") values.set(env.name, env.value);
    }
    return args.map((arg) =>
      arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
        const value = values.get(name);
        if (value === undefined)
          throw new Error(`args use $(${name}), which the container's env does not set`);
        return value;
      }),
    );
  }

  it("has a StatefulSet, a headless and a client Service, and a PodDisruptionBudget", () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      "PodDisruptionBudget",
      "Service",
      "Service",
      "StatefulSet",
    ]);
    expect(headless).toBeDefined();
    expect(clientService).toBeDefined();
  });

  it("runs `quorum node` with flags the CLI has", () => {
    expect(args[0]).toBe("node");
    expectKnownNodeFlags(args);
  });

  it("builds --initial-cluster from the stable pod names behind the headless Service", () => {
    const replicas: number = sts.spec.replicas;
    expect(replicas).toBe(3);
    expect(sts.spec.serviceName).toBe(headless.metadata.name);
    // Names must resolve before pods are ready, and pods must start together to elect.
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(sts.spec.podManagementPolicy).toBe("Parallel");
    const peerPort = portOf(flagValue(args, "--listen-peer"));
    const dns = (pod: string) => `${pod}.${headless.metadata.name}.prod.svc.cluster.local`;
    const names = Array.from({ length: replicas }, (_, i) => `${sts.metadata.name}-${i}`);
    for (let i = 0; i < replicas; i++) {
      const words = argsOfPod(i);
      expect(flagValue(words, "--name")).toBe(names[i]);
      expect(flagValue(words, "--initial-cluster")).toBe(
        names.map((n) => `${n}=${dns(n)}:${peerPort}`).join(","),
      );
      // The node announces --listen-client to the others; its own DNS name is reachable.
      expect(hostOf(flagValue(words, "--listen-client"))).toBe(dns(names[i]!));
    }
  });

  it("agrees on ports: flags, container ports, Services, probes", () => {
    const ports = Object.fromEntries(
      ["client", "peer", "metrics"].map((name) => [name, portOf(flagValue(args, `--listen-${name}`))]),
    );
    for (const [name, port] of Object.entries(ports)) expect(containerPort(name), name).toBe(port);
    expect(headless.spec.ports.map((p: Doc) => p.port)).toContain(ports.peer);
    const client = clientService.spec.ports.find((p: Doc) => p.name === "client");
    expect(containerPort(client.targetPort)).toBe(ports.client);
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      expect(probe.httpGet.path).toBe("/health");
      expect(containerPort(probe.httpGet.port)).toBe(ports.metrics);
    }
    // Probes come from the kubelet, from outside the pod: metrics must not be on loopback.
    expect(hostOf(flagValue(args, "--listen-metrics"))).toBe("0.0.0.0");
  });

  it("keeps data on a claim per pod, mounts TLS files where the flags read them, requests resources", () => {
    const claim = sts.spec.volumeClaimTemplates[0];
    const mount = (name: string) => container.volumeMounts.find((m: Doc) => m.name === name);
    expect(mount(claim.metadata.name).mountPath).toBe(flagValue(args, "--data-dir"));
    expect(claim.spec.accessModes).toEqual(["ReadWriteOnce"]);
    const tlsVolume = pod.volumes.find((v: Doc) => v.secret);
    for (const flag of flagsOf(args).filter((f) => f.endsWith("-file"))) {
      expect(flagValue(args, flag)!.startsWith(`${mount(tlsVolume.name).mountPath}/`), flag).toBe(true);
    }
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.requests.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
  });

  it("selects the pods everywhere, and keeps a majority through voluntary disruptions", () => {
    const labels = sts.spec.template.metadata.labels;
    const matches = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    expect(matches(sts.spec.selector.matchLabels)).toBe(true);
    for (const service of services) expect(matches(service.spec.selector), service.metadata.name).toBe(true);
    const pdb = ofKind("PodDisruptionBudget")[0];
    expect(matches(pdb.spec.selector.matchLabels)).toBe(true);
    expect(pdb.spec.minAvailable).toBe(Math.floor(sts.spec.replicas / 2) + 1);
  });
});
