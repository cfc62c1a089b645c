// deploy/: what the manifests give a node is what a node runs on. Containers cannot run here, so
// this test reads deploy/Dockerfile, deploy/compose.yaml and deploy/kubernetes/ as Docker and
// Kubernetes would (the image's entry point and environment, the service's command and
// environment, the pod's args, env, secrets, config maps and mounts, the init container's
// script), runs deploy/setup.mjs for the secrets and the join list, and starts real nodes with
// exactly that command line and environment. It substitutes only what a cluster provides:
// host names (to localhost), ports (free ones: the nodes share one machine), the database (the
// test's), and mount paths (to temporary folders holding the same files). Then the nodes must
// form one cluster, answer /readyz and the health checks the manifests name, and stop
// gracefully within their grace period. It also checks that the Kubernetes objects fit the
// API's schemas, that the Grafana dashboard parses, its PromQL parses and it reads only metrics
// a node exports.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { validate as validateDockerfile } from 'dockerfile-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { freePort } from '../../node/store/embedded.ts';
import { connect } from '../../protocol/sdk/index.ts';
import { createTestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DEPLOY = join(ROOT, 'deploy');
/** A graceful stop hands shards off in about a second; the manifests allow 60 s. */
const STOP_TIMEOUT_MS = 30_000;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A parsed manifest: read by path, checked by the assertions. */
type Obj = Record<string, any>;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The image: deploy/Dockerfile's last stage, as Docker reads it.

interface Image {
  workdir: string;
  env: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
  healthcheck: string[];
  expose: number[];
  user: string;
}

function readImage(): Image {
  const lines = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n');
  const instructions = lines.map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
  let lastFrom = -1;
  instructions.forEach((line, i) => /^FROM\s/i.test(line) && (lastFrom = i));
  const image: Image = { workdir: '/', env: {}, entrypoint: [], cmd: [], healthcheck: [], expose: [], user: 'root' };
  for (const line of instructions.slice(lastFrom + 1)) {
    const [, keyword, rest] = /^(\w+)\s+(.*)$/s.exec(line)!;
    switch (keyword!.toUpperCase()) {
      case 'WORKDIR':
        image.workdir = rest!.trim();
        break;
      case 'USER':
        image.user = rest!.trim();
        break;
      case 'ENV':
        for (const [, key, value] of rest!.matchAll(/(\w+)=("[^"]*"|\S+)/g)) image.env[key!] = value!.replace(/^"|"$/g, '');
        break;
      case 'ENTRYPOINT':
        image.entrypoint = JSON.parse(rest!) as string[];
        break;
      case 'CMD':
        image.cmd = JSON.parse(rest!) as string[];
        break;
      case 'HEALTHCHECK':
        image.healthcheck = JSON.parse(/\bCMD\s+(\[.*\])\s*$/.exec(rest!)![1]!) as string[];
        break;
      case 'EXPOSE':
        image.expose.push(...rest!.split(/\s+/).map((port) => Number(port.split('/')[0])));
        break;
    }
  }
  return image;
}

describe('deploy/Dockerfile', () => {
  it('lints clean, runs `node bin/kairos.mjs start` as a non-root user, and its build context holds what it copies', () => {
    // dockerfile-utils: the validator behind VS Code's Docker extension (instructions, flags,
    // arguments); hadolint cannot be installed here.
    const diagnostics = validateDockerfile(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'));
    expect(diagnostics.map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
    const image = readImage();
    expect([...image.entrypoint, ...image.cmd]).toEqual(['node', 'bin/kairos.mjs', 'start']);
    expect(image.user).toBe('node');
    expect(image.healthcheck.join(' ')).toContain('/healthz');
    // deploy/Dockerfile.dockerignore lists what the build may see: every COPY from the context
    // must be on it, or the build fails (or copies nothing) where no test can see it here.
    const text = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
    const sources = [...text.matchAll(/^COPY\s+(?!--from)(.*)$/gm)].flatMap(([, args]) => args!.trim().split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
    expect(sources.length).toBeGreaterThan(4);
    const allowed = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    for (const source of sources) {
      expect(allowed, `COPY ${source}`).toContain(source.replace(/^\.\//, '').replace(/\/$/, ''));
      expect(existsSync(join(ROOT, source)), `COPY ${source}`).toBe(true);
    }
    // What the runtime stage takes from the build stage is what bin/kairos.mjs needs.
    expect(text).toMatch(/COPY --from=build \/src\/dist /);
    expect(text).toMatch(/COPY --from=build \/src\/node_modules /);
    expect(text).toMatch(/COPY --from=build \/src\/package\.json /);
  });
});

// ---------------------------------------------------------------------------------------------
// Running a node with a given command line and environment, and nothing else.

interface Ports {
  client: number;
  http: number;
  peer: number;
}

interface RunningNode {
  name: string;
  ports: Ports;
  nodeId: string;
  child: ChildProcess;
  log(): string;
  stop(): Promise<number | null>;
}

/** Runs `argv` (the image's entry point and the manifest's command) in the repository, which
 * is laid out as the image's WORKDIR is (bin/, dist/, node_modules/, package.json), with
 * exactly `env` (and PATH, to find node). */
function launch(name: string, argv: string[], env: Record<string, string>, ports: Ports): Promise<RunningNode> {
  const [command, ...args] = argv;
  expect(command).toBe('node');
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  cleanups.push(stop);
  return new Promise((resolveNode, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready in 90 s:\n${output.stderr}`)), 90_000);
    const check = () => {
      const match = /kairos: node (\S+) ready at/.exec(output.stdout);
      if (match === null) return;
      clearTimeout(timer);
      resolveNode({ name, ports, nodeId: match[1]!, child, log: () => output.stderr, stop });
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready:\n${output.stderr}`));
    });
  });
}

async function freePorts(): Promise<Ports> {
  return { client: await freePort(), http: await freePort(), peer: await freePort() };
}

async function httpStatus(url: string): Promise<number> {
  return (await fetch(url)).status;
}

/** Runs a health check command (an argv, as Docker runs it) and returns its exit code. */
function runCheck(argv: string[], env: Record<string, string> = {}): number {
  const [command, ...args] = argv;
  expect(command).toBe('node');
  try {
    execFileSync(process.execPath, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: 'pipe', timeout: 10_000 });
    return 0;
  } catch (error) {
    return (error as { status?: number }).status ?? 1;
  }
}

/** The cluster as each node sees it: every node alive and in the ring, every shard placed. */
async function expectOneCluster(nodes: RunningNode[], token: string, advertised: Map<string, string>): Promise<void> {
  for (const node of nodes) {
    const client = await connect({ url: `ws://127.0.0.1:${node.ports.client}`, token, onWarning: () => {} });
    try {
      const info = await pollUntil(
        `${node.name} to see ${nodes.length} members alive in its ring`,
        async () => {
          const view = await client.cluster();
          return view.members.length === nodes.length && view.members.every((m) => m.status === 'alive' && m.inRing) && view.owners.every((o) => o !== null) ? view : null;
        },
        30_000,
        200,
      );
      expect(info.node).toBe(node.nodeId);
      expect(new Set(info.members.map((m) => m.node))).toEqual(new Set(nodes.map((n) => n.nodeId)));
      for (const member of info.members) {
        const owner = nodes.find((n) => n.nodeId === member.node)!;
        expect(member.clientUrl, `the URL ${owner.name} advertises`).toBe(advertised.get(owner.name));
      }
      expect(new Set(info.owners).size).toBe(nodes.length);
    } finally {
      await client.close();
    }
  }
}

/** Multiaddrs of the join list, with each host (a node's DNS name) sent to localhost and the
 * node's peer port. `nodeOfHost` names the node a host stands for. */
function localizeJoin(list: string, nodeOfHost: (host: string) => string, peerPorts: Map<string, number>): string {
  return list
    .split(',')
    .map((addr) => {
      const match = /^\/dns4\/([^/]+)\/tcp\/(\d+)\/p2p\/(\w+)$/.exec(addr.trim());
      expect(match, `join address ${addr}`).not.toBeNull();
      const port = peerPorts.get(nodeOfHost(match![1]!));
      expect(port, `a node for ${match![1]}`).toBeDefined();
      return `/dns4/localhost/tcp/${port}/p2p/${match![3]}`;
    })
    .join(',');
}

/** What only the container provides has been replaced: nothing of it may be left. */
function expectLocal(argv: string[], env: Record<string, string>): void {
  for (const text of [...argv, ...Object.values(env)]) {
    expect(text).not.toMatch(/0\.0\.0\.0|\/var\/lib\/kairos|\/etc\/kairos|\/run\/secrets|kairos-peers|@postgres:|\/dns4\/kairos-/);
  }
}

function readEnvFile(path: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (match !== null) vars[match[1]!] = match[2]!;
  }
  return vars;
}

function setup(target: 'compose' | 'kubernetes', dir: string): string {
  return execFileSync(process.execPath, [join(DEPLOY, 'setup.mjs'), target, dir], { encoding: 'utf8' });
}

// ---------------------------------------------------------------------------------------------
// Compose: variable interpolation as `docker compose` does it, from .env.

function interpolate(value: Json, vars: Record<string, string>): Json {
  if (typeof value === 'string') {
    return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, name, colon, op, arg, bare) => {
      if (whole === '$$') return '$';
      const key = (name ?? bare) as string;
      const set = key in vars && (colon !== ':' || vars[key] !== '');
      if (set) return vars[key]!;
      if (op === '?') throw new Error(`compose: ${key} is required: ${arg}`);
      return op === '-' ? (arg as string) : '';
    });
  }
  if (Array.isArray(value)) return value.map((item) => interpolate(item, vars));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, vars)]));
  return value;
}

/** A compose `environment` (a map or a list of KEY=value) as a map. */
function composeEnvironment(environment: Json | undefined): Record<string, string> {
  if (environment === undefined || environment === null) return {};
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((item): [string, string] => {
      const [key, value] = String(item).split(/=(.*)/s);
      return [key!, value ?? ''];
    }));
  }
  return Object.fromEntries(Object.entries(environment as Record<string, Json>).map(([k, v]) => [k, String(v)]));
}

describe('deploy/compose.yaml', () => {
  it('starts nodes that form one cluster, answer /readyz and their health checks, and stop gracefully', { timeout: 300_000 }, async () => {
    const image = readImage();
    const dir = tempDir('kairos-compose-');
    cpSync(join(DEPLOY, 'compose.yaml'), join(dir, 'compose.yaml'));
    expect(setup('compose', dir)).toMatch(/secrets\/node-keys\/kairos-3 +created: node id 12D3KooW/);
    const vars = readEnvFile(join(dir, '.env'));
    const compose = interpolate(parseYaml(readFileSync(join(dir, 'compose.yaml'), 'utf8'), { merge: true }) as Json, vars) as Obj;
    const names = Object.keys(compose.services).filter((name) => /^kairos-\d+$/.test(name));
    expect(names).toEqual(['kairos-1', 'kairos-2', 'kairos-3']);

    // The database the nodes are given is the one the postgres service creates.
    const postgres = composeEnvironment(compose.services.postgres.environment);
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());

    const ports = new Map<string, Ports>();
    for (const name of names) ports.set(name, await freePorts());
    const peerPorts = new Map(names.map((name) => [name, ports.get(name)!.peer]));
    const advertised = new Map<string, string>();

    const launches = names.map((name) => {
      const service = compose.services[name] as Obj;
      const own = ports.get(name)!;
      const env = { ...image.env, ...composeEnvironment(service.environment) };
      const argv = [...(service.entrypoint ?? image.entrypoint), ...(service.command ?? image.cmd)] as string[];

      // The container's ports: the client, HTTP and peer ports the node listens on inside.
      const containerPort = Number(env.KAIROS_PORT);
      const httpPort = Number(env.KAIROS_HTTP_PORT);
      expect(image.expose).toEqual(expect.arrayContaining([containerPort, httpPort, Number(/\/tcp\/(\d+)$/.exec(env.KAIROS_LISTEN!)![1])]));
      const published = new Map<number, number>();
      for (const spec of service.ports as string[]) {
        const [, , host, target] = /^(?:(.+):)?(\d+):(\d+)$/.exec(spec)!;
        published.set(Number(host), Number(target));
      }
      expect([...published.values()].sort()).toEqual([containerPort, httpPort].sort());

      // Secrets: mounted from the files setup.mjs wrote.
      const dataDir = tempDir(`kairos-${name}-data-`);
      const mounts = new Map<string, string>();
      for (const entry of service.secrets as Array<string | Obj>) {
        const source = typeof entry === 'string' ? entry : (entry.source as string);
        const target = typeof entry === 'string' ? entry : ((entry.target as string | undefined) ?? source);
        const file = resolve(dir, compose.secrets[source].file as string);
        expect(existsSync(file), `secret ${source}: ${file}`).toBe(true);
        const path = target.startsWith('/') ? target : `/run/secrets/${target}`;
        if (path === `${env.KAIROS_DATA_DIR}/peer-key`) cpSync(file, join(dataDir, 'peer-key'));
        else mounts.set(path, file);
      }
      expect(existsSync(join(dataDir, 'peer-key')), `${name} gets its node key`).toBe(true);

      // What a cluster provides, replaced.
      const url = new URL(env.DATABASE_URL!);
      expect(url.hostname).toBe('postgres');
      expect([url.username, decodeURIComponent(url.password), url.pathname.slice(1)]).toEqual([postgres.POSTGRES_USER, postgres.POSTGRES_PASSWORD, postgres.POSTGRES_DB]);
      expect(url.password).not.toBe('');
      env.DATABASE_URL = db.url;
      expect(env.KAIROS_HOST).toBe('0.0.0.0');
      env.KAIROS_HOST = '127.0.0.1';
      env.KAIROS_PORT = String(own.client);
      expect(env.KAIROS_HTTP_HOST).toBe('0.0.0.0');
      env.KAIROS_HTTP_HOST = '127.0.0.1';
      env.KAIROS_HTTP_PORT = String(own.http);
      expect(env.KAIROS_LISTEN).toMatch(/^\/ip4\/0\.0\.0\.0\/tcp\/\d+$/);
      env.KAIROS_LISTEN = `/ip4/127.0.0.1/tcp/${own.peer}`;
      env.KAIROS_JOIN = localizeJoin(env.KAIROS_JOIN!, (host) => host, peerPorts);
      env.KAIROS_DATA_DIR = dataDir;
      for (const key of ['KAIROS_CLUSTER_KEY_FILE', 'KAIROS_TOKENS_FILE']) {
        expect(mounts.has(env[key]!), `${key}=${env[key]} is a mounted secret`).toBe(true);
        env[key] = mounts.get(env[key]!)!;
      }
      const at = argv.indexOf('--advertise-url');
      expect(at).toBeGreaterThan(0);
      const advertise = new URL(argv[at + 1]!);
      expect(published.get(Number(advertise.port)), 'the advertised port is the published client port').toBe(containerPort);
      argv[at + 1] = `ws://${advertise.hostname}:${own.client}`;
      advertised.set(name, argv[at + 1]!);
      expectLocal(argv, env);
      return { name, argv, env, service };
    });

    // Compose starts them together once PostgreSQL is healthy.
    for (const { service } of launches) expect(service.depends_on.postgres.condition).toBe('service_healthy');
    const nodes = await Promise.all(launches.map(({ name, argv, env }) => launch(name, argv, env, ports.get(name)!)));

    const [token] = Object.keys(JSON.parse(readFileSync(join(dir, 'secrets/tokens.json'), 'utf8')) as Record<string, string>);
    await expectOneCluster(nodes, token!, advertised);
    for (const node of nodes) {
      await pollUntil(`${node.name} /readyz`, async () => (await httpStatus(`http://127.0.0.1:${node.ports.http}/readyz`)) === 200, 30_000, 200);
      const service = compose.services[node.name] as Obj;
      const [kind, ...check] = service.healthcheck.test as string[];
      expect(kind).toBe('CMD');
      const containerHttp = Number(image.env.KAIROS_HTTP_PORT);
      expect(check.join(' ')).toContain(`:${containerHttp}/healthz`);
      expect(runCheck(check.map((arg) => arg.replace(`:${containerHttp}/`, `:${node.ports.http}/`))), `${node.name}'s compose health check`).toBe(0);
      expect(runCheck(image.healthcheck, { KAIROS_HTTP_PORT: String(node.ports.http) }), `the image's HEALTHCHECK on ${node.name}`).toBe(0);
    }

    // Every metric the dashboard reads is one a node exports.
    const exposition = await (await fetch(`http://127.0.0.1:${nodes[0]!.ports.http}/metrics`)).text();
    const exported = new Set([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) => (type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!])));
    const used = dashboardMetrics();
    expect(used.size).toBeGreaterThan(15);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);

    // A graceful stop, well within stop_grace_period, with a hand-off.
    const grace = Number(/^(\d+)s$/.exec(compose.services['kairos-1'].stop_grace_period as string)![1]) * 1000;
    const started = Date.now();
    const codes = await Promise.all(nodes.map((node) => node.stop()));
    expect(codes).toEqual([0, 0, 0]);
    expect(Date.now() - started).toBeLessThan(grace);
  });
});

// ---------------------------------------------------------------------------------------------
// Kubernetes: the StatefulSet's pod, with the kustomization's Secrets and ConfigMaps.

/** The files (key → content) of a Secret or ConfigMap that kustomization.yaml generates. */
function generated(dir: string, kustomization: Obj, kind: 'secretGenerator' | 'configMapGenerator', name: string): Map<string, Buffer> {
  const generator = (kustomization[kind] as Obj[]).find((g) => g.name === name);
  expect(generator, `${kind} ${name}`).toBeDefined();
  const data = new Map<string, Buffer>();
  for (const spec of (generator!.files ?? []) as string[]) {
    const [key, path] = spec.includes('=') ? (spec.split('=') as [string, string]) : [basename(spec), spec];
    data.set(key, readFileSync(join(dir, path)));
  }
  for (const path of (generator!.envs ?? []) as string[]) {
    for (const [key, value] of Object.entries(readEnvFile(join(dir, path)))) data.set(key, Buffer.from(value));
  }
  return data;
}

/** Kubernetes' $(VAR) references in an env value, to variables defined before it. */
function expandK8s(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name) => (whole === '$$' ? '$' : (env[name as string] ?? whole)));
}

describe('deploy/kubernetes', () => {
  it('runs pods (init container, then node) that form one cluster and pass their probes; a pod past the keyed ones joins too', { timeout: 300_000 }, async () => {
    const image = readImage();
    const dir = tempDir('kairos-k8s-');
    cpSync(join(DEPLOY, 'kubernetes'), dir, { recursive: true });
    expect(setup('kubernetes', dir)).toMatch(/secrets\/node-keys\/kairos-2 +created: node id 12D3KooW/);
    const kustomization = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
    const statefulSet = parseYaml(readFileSync(join(dir, 'statefulset.yaml'), 'utf8'), { version: '1.1' }) as Obj;
    const services = parseAllDocuments(readFileSync(join(dir, 'services.yaml'), 'utf8')).map((doc) => doc.toJS() as Obj);
    const headless = services.find((s) => s.spec.clusterIP === 'None')!;
    expect(statefulSet.spec.serviceName).toBe(headless.metadata.name);
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    const namespace = kustomization.namespace as string;
    const pod = statefulSet.spec.template.spec as Obj;
    const [container] = pod.containers as Obj[];
    const [init] = pod.initContainers as Obj[];
    expect(container!.command, 'the image entry point is used').toBeUndefined();
    const replicas = statefulSet.spec.replicas as number;
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());

    // The pods: the StatefulSet's replicas, and one more, as after scaling up.
    const names = Array.from({ length: replicas + 1 }, (_, i) => `${statefulSet.metadata.name}-${i}`);
    const ports = new Map<string, Ports>();
    for (const name of names) ports.set(name, await freePorts());
    const peerPorts = new Map(names.map((name) => [name, ports.get(name)!.peer]));
    const advertised = new Map<string, string>();
    const namedPort = (name: string) => (container!.ports as Obj[]).find((p) => p.name === name)!.containerPort as number;

    function podSpec(name: string) {
      const own = ports.get(name)!;
      const dataDir = tempDir(`kairos-${name}-data-`);
      // Volumes: the data dir (the PersistentVolume), secrets as folders of their keys.
      const volumes = new Map<string, string>([['data', dataDir]]);
      for (const volume of pod.volumes as Obj[]) {
        if (volume.secret === undefined) continue;
        const folder = tempDir(`kairos-${name}-${volume.name}-`);
        for (const [key, content] of generated(dir, kustomization, 'secretGenerator', volume.secret.secretName)) writeFileSync(join(folder, key), content);
        volumes.set(volume.name, folder);
      }
      volumes.set('tmp', tempDir(`kairos-${name}-tmp-`));
      const mountsOf = (c: Obj) => new Map((c.volumeMounts as Obj[]).map((m) => [m.mountPath as string, volumes.get(m.name as string)!]));
      const localPath = (mounts: Map<string, string>, path: string) => {
        for (const [mountPath, folder] of mounts) if (path === mountPath || path.startsWith(`${mountPath}/`)) return folder + path.slice(mountPath.length);
        throw new Error(`${path} is on no volume`);
      };
      const envOf = (c: Obj) => {
        const env: Record<string, string> = { ...image.env };
        for (const entry of (c.env ?? []) as Obj[]) {
          const from = entry.valueFrom as Obj | undefined;
          if (from === undefined) env[entry.name] = expandK8s(String(entry.value), env);
          else if (from.fieldRef !== undefined) env[entry.name] = ({ 'metadata.name': name, 'metadata.namespace': namespace } as Record<string, string>)[from.fieldRef.fieldPath]!;
          else if (from.secretKeyRef !== undefined) env[entry.name] = generated(dir, kustomization, 'secretGenerator', from.secretKeyRef.name).get(from.secretKeyRef.key)!.toString();
          else if (from.configMapKeyRef !== undefined) env[entry.name] = generated(dir, kustomization, 'configMapGenerator', from.configMapKeyRef.name).get(from.configMapKeyRef.key)!.toString();
          expect(env[entry.name], `${entry.name} of ${name}`).toBeDefined();
        }
        return env;
      };

      // The init container's script, with its mount paths on the pod's folders.
      const initMounts = mountsOf(init!);
      let script = (init!.command as string[]).at(-1)!;
      for (const [mountPath, folder] of initMounts) script = script.replaceAll(mountPath, folder);
      const initArgv = [...(init!.command as string[]).slice(0, -1), script];

      const mounts = mountsOf(container!);
      const env = envOf(container!);
      const argv = [...image.entrypoint, ...((container!.args as string[] | undefined) ?? image.cmd)];
      expect(env.DATABASE_URL).toMatch(/^postgres:\/\//);
      env.DATABASE_URL = db.url;
      expect([env.KAIROS_HOST, env.KAIROS_HTTP_HOST]).toEqual(['0.0.0.0', '0.0.0.0']);
      expect(Number(env.KAIROS_PORT)).toBe(namedPort('client'));
      expect(Number(env.KAIROS_HTTP_PORT)).toBe(namedPort('http'));
      expect(env.KAIROS_LISTEN).toBe(`/ip4/0.0.0.0/tcp/${namedPort('peer')}`);
      expect(image.expose).toEqual(expect.arrayContaining([namedPort('client'), namedPort('http'), namedPort('peer')]));
      Object.assign(env, {
        KAIROS_HOST: '127.0.0.1',
        KAIROS_PORT: String(own.client),
        KAIROS_HTTP_HOST: '127.0.0.1',
        KAIROS_HTTP_PORT: String(own.http),
        KAIROS_LISTEN: `/ip4/127.0.0.1/tcp/${own.peer}`,
      });
      const serviceHost = `${headless.metadata.name}`;
      env.KAIROS_JOIN = localizeJoin(env.KAIROS_JOIN!, (host) => (host.endsWith(`.${serviceHost}`) ? host.slice(0, -serviceHost.length - 1) : host), peerPorts);
      expect(env.KAIROS_ADVERTISE_URL).toBe(`ws://${name}.${serviceHost}.${namespace}.svc:${namedPort('client')}`);
      env.KAIROS_ADVERTISE_URL = `ws://127.0.0.1:${own.client}`;
      advertised.set(name, env.KAIROS_ADVERTISE_URL);
      for (const key of ['KAIROS_DATA_DIR', 'KAIROS_CLUSTER_KEY_FILE', 'KAIROS_TOKENS_FILE']) env[key] = localPath(mounts, env[key]!);
      expectLocal(argv, env);
      return { name, initArgv, initEnv: envOf(init!), dataDir, argv, env };
    }

    const pods = names.map(podSpec);
    for (const pod of pods) {
      execFileSync(pod.initArgv[0]!, pod.initArgv.slice(1), { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...pod.initEnv }, stdio: 'pipe' });
      // The keyed pods get their key from the Secret; the one past them makes its own.
      expect(existsSync(join(pod.dataDir, 'peer-key')), `${pod.name}'s key installed`).toBe(pod.name !== names.at(-1));
    }
    // podManagementPolicy Parallel: the replicas start together.
    expect(statefulSet.spec.podManagementPolicy).toBe('Parallel');
    const nodes = await Promise.all(pods.slice(0, replicas).map((pod) => launch(pod.name, pod.argv, pod.env, ports.get(pod.name)!)));
    const [token] = Object.keys(JSON.parse(generated(dir, kustomization, 'secretGenerator', 'kairos-tokens').get('tokens.json')!.toString()) as Record<string, string>);
    await expectOneCluster(nodes, token!, advertised);

    const probe = async (node: RunningNode, which: 'readinessProbe' | 'livenessProbe' | 'startupProbe') => {
      const get = container![which].httpGet as Obj;
      expect(get.port).toBe('http');
      return httpStatus(`http://127.0.0.1:${node.ports.http}${get.path}`);
    };
    for (const node of nodes) {
      await pollUntil(`${node.name} readinessProbe`, async () => (await probe(node, 'readinessProbe')) === 200, 30_000, 200);
      expect(await probe(node, 'livenessProbe')).toBe(200);
      expect(await probe(node, 'startupProbe')).toBe(200);
    }

    // Scaled up: a pod with no key in the Secret makes its own and joins by the keyed ones.
    const extra = pods.at(-1)!;
    nodes.push(await launch(extra.name, extra.argv, extra.env, ports.get(extra.name)!));
    expect(existsSync(join(extra.dataDir, 'peer-key'))).toBe(true);
    await expectOneCluster(nodes, token!, advertised);

    // SIGTERM: each stops gracefully within its grace period, less the preStop hook's sleep.
    const grace = (pod.terminationGracePeriodSeconds as number) * 1000;
    const preStop = container!.lifecycle.preStop.exec.command as string[];
    expect(preStop[0]).toBe('sleep');
    const started = Date.now();
    expect(await Promise.all(nodes.map((node) => node.stop()))).toEqual(nodes.map(() => 0));
    expect(Date.now() - started).toBeLessThan(grace - Number(preStop[1]) * 1000);
  });

  it('is made of objects that fit the Kubernetes API schemas (kubernetes-models), and placeholders only', async () => {
    const kustomization = parseYaml(readFileSync(join(DEPLOY, 'kubernetes/kustomization.yaml'), 'utf8')) as Obj;
    const objects: Obj[] = [];
    for (const file of kustomization.resources as string[]) {
      for (const doc of parseAllDocuments(readFileSync(join(DEPLOY, 'kubernetes', file), 'utf8'), { version: '1.1' })) {
        expect(doc.errors).toEqual([]);
        objects.push(doc.toJS() as Obj);
      }
    }
    expect(objects.map((o) => o.kind).sort()).toEqual(['Namespace', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceMonitor', 'StatefulSet']);
    for (const object of objects) await validateK8s(object);
    // The repository holds no secret: every file the Secrets are made from is a placeholder.
    for (const generator of kustomization.secretGenerator as Obj[]) {
      for (const spec of [...(generator.files ?? []), ...(generator.envs ?? [])] as string[]) {
        const text = readFileSync(join(DEPLOY, 'kubernetes', spec.split('=').at(-1)!), 'utf8');
        expect(text, spec).toMatch(/REPLACE/);
      }
    }
  });

  it.skipIf(!hasKubectl())('builds with kustomize (kubectl kustomize) into objects that fit the schemas', async () => {
    const dir = tempDir('kairos-kustomize-');
    cpSync(join(DEPLOY, 'kubernetes'), dir, { recursive: true });
    setup('kubernetes', dir);
    const rendered = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
    const objects = parseAllDocuments(rendered, { version: '1.1' }).map((doc) => doc.toJS() as Obj);
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Namespace', 'PodDisruptionBudget', 'Secret', 'Secret', 'Secret', 'Secret', 'Service', 'Service', 'ServiceMonitor', 'StatefulSet']);
    for (const object of objects) {
      // kustomize wraps long base64 over lines, which the API server's decoder skips.
      if (object.kind === 'Secret') for (const key of Object.keys(object.data as Obj)) object.data[key] = String(object.data[key]).replace(/\s/g, '');
      await validateK8s(object);
      if (object.kind !== 'Namespace') expect(object.metadata.namespace).toBe('kairos');
    }
    // The generated names (with their content hash) are the ones the pod refers to.
    const names = new Set(objects.map((o) => o.metadata.name as string));
    const pod = objects.find((o) => o.kind === 'StatefulSet')!.spec.template.spec as Obj;
    for (const volume of pod.volumes as Obj[]) if (volume.secret !== undefined) expect(names).toContain(volume.secret.secretName);
    for (const entry of pod.containers[0].env as Obj[]) {
      const ref = entry.valueFrom?.secretKeyRef ?? entry.valueFrom?.configMapKeyRef;
      if (ref !== undefined) expect(names).toContain(ref.name);
    }
  });
});

function hasKubectl(): boolean {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Validates an object against the JSON schema of its kind, generated from the Kubernetes
 * OpenAPI spec (kubernetes-models; the Prometheus Operator's CRDs for ServiceMonitor). */
async function validateK8s(object: Obj): Promise<void> {
  const [group, version] = (object.apiVersion as string).includes('/') ? (object.apiVersion as string).split('/') : ['', object.apiVersion as string];
  const module =
    object.apiVersion === 'monitoring.coreos.com/v1'
      ? await import(`@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${object.kind}`)
      : await import(group === '' ? `kubernetes-models/v1/${object.kind}` : `kubernetes-models/${group}/${version}/${object.kind}`);
  const Model = module[object.kind as string] as new (data: Obj) => { validate(): void };
  expect(() => new Model(object).validate(), `${object.kind} ${object.metadata?.name}`).not.toThrow();
}

// ---------------------------------------------------------------------------------------------
// Grafana.

interface Panel {
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string }>;
}

function dashboard(): { panels: Panel[]; templating: { list: Array<{ name: string; type: string; query: unknown }> } } {
  return JSON.parse(readFileSync(join(DEPLOY, 'grafana/kairos.json'), 'utf8'));
}

/** The PromQL of every panel and variable, with Grafana's variables as PromQL would see them. */
function dashboardQueries(): string[] {
  const board = dashboard();
  const variables = board.templating.list.filter((v) => v.type === 'query').map((v) => (v.query as { query: string }).query.replace(/^label_values\((.*), *\w+\)$/, '$1'));
  return [...board.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)), ...variables].map((expr) => expr.replaceAll('$__rate_interval', '5m'));
}

function dashboardMetrics(): Set<string> {
  return new Set(dashboardQueries().flatMap((expr) => [...expr.matchAll(/\bkairos_[a-z0-9_]+/g)].map((m) => m[0])));
}

describe('deploy/grafana/kairos.json', () => {
  it('parses, takes its data source from a variable, lays its panels out without overlap, and its PromQL parses', () => {
    const board = dashboard();
    expect(board.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const panels = board.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(20);
    for (const panel of panels) expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
    for (const [i, a] of board.panels.entries()) {
      for (const b of board.panels.slice(i + 1)) {
        const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w && a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} / ${b.title}`).toBe(false);
      }
    }
    for (const expr of dashboardQueries()) {
      const errors: number[] = [];
      promqlParser.parse(expr).iterate({ enter: (node) => void (node.type.isError && errors.push(node.from)) });
      expect(errors, expr).toEqual([]);
    }
    // What the brief asked the dashboard to show.
    for (const metric of ['submissions_total', 'job_transitions_total', 'jobs', 'commit_duration_seconds_bucket', 'commit_batch_writes_bucket', 'pg_pool_waiting', 'shards_owned', 'shard_acquisitions_total', 'members', 'forwards_total', 'client_connections', 'nodejs_eventloop_lag_p99_seconds', 'breakers', 'breaker_transitions_total']) {
      expect(dashboardMetrics()).toContain(`kairos_${metric}`);
    }
  });
});
