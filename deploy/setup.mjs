#!/usr/bin/env node
// One-time setup of a Kairos deployment: the secrets and the join list that deploy/compose.yaml
// or deploy/kubernetes/ need before the first start (deploy/README.md says when to run it).
//
//   node deploy/setup.mjs compose    [DIR] [--nodes N] [--tenant NAME]   (DIR: deploy/)
//   node deploy/setup.mjs kubernetes [DIR] [--nodes N] [--tenant NAME]   (DIR: deploy/kubernetes/)
//
// It writes, in DIR:
//   secrets/cluster.key          the cluster key (`kairos keygen`)
//   secrets/tokens.json          one token for tenant NAME (default `default`): {"<token>": "NAME"}
//   secrets/node-keys/<node>     the node key (`peer-key`) of each of the first N nodes (default 3),
//                                so that their ids are known before they first start
//   .env (compose) or join.env (kubernetes): KAIROS_JOIN, those N nodes' peer addresses, each
//                                with its /p2p/<node id>; compose's .env also gets POSTGRES_PASSWORD
//
// A file that exists is kept (a key is never replaced: that would lock nodes out or change their
// ids), unless it is still one of the placeholders this repository ships (its text begins with
// REPLACE). Running it again only rewrites KAIROS_JOIN, from the keys as they are. It prints no
// secret.
//
// The keys are made by the node's own code (dist/, built by `npm ci` or in the image), so they
// are exactly what `kairos keygen` and a node's first start would write.

import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = new URL('../dist/node/adapters/', import.meta.url);
if (!existsSync(new URL('libp2p/peer-key.js', DIST))) {
  process.stderr.write('setup: dist/ is missing; run `npm ci` (it builds) in the Kairos checkout first, or run this inside the image\n');
  process.exit(1);
}
const { writeClusterKeyFile } = await import(new URL('libp2p/cluster-key.js', DIST).href);
const { loadOrCreatePeerKey } = await import(new URL('libp2p/peer-key.js', DIST).href);
const { TokenTable } = await import(new URL('tokens.js', DIST).href);

/** Where each kind of deployment keeps things, and how its nodes reach one another. */
const TARGETS = {
  compose: {
    dir: HERE,
    node: (i) => `kairos-${i + 1}`,
    // Compose's DNS names the service; every node listens for peers on 4001 (compose.yaml).
    peerAddress: (node, id) => `/dns4/${node}/tcp/4001/p2p/${id}`,
    envFile: '.env',
    // Compose mounts a secret file as it is on the host (it cannot change its owner or mode),
    // and the node runs as uid 1000 in the container, so the files are readable by all and the
    // secrets/ folder is the owner's alone.
    fileMode: 0o444,
    dirMode: 0o700,
    postgresPassword: true,
  },
  kubernetes: {
    dir: join(HERE, 'kubernetes'),
    node: (i) => `kairos-${i}`,
    // The StatefulSet's pods, by the headless Service kairos-peers, in their own namespace.
    peerAddress: (node, id) => `/dns4/${node}.kairos-peers/tcp/4001/p2p/${id}`,
    envFile: 'join.env',
    // kustomize reads them here and puts them in Secrets; nothing else needs them.
    fileMode: 0o600,
    dirMode: 0o700,
    postgresPassword: false,
  },
};

const USAGE = 'usage: node deploy/setup.mjs compose|kubernetes [DIR] [--nodes N] [--tenant NAME]';

function parse(argv) {
  const [targetName, ...rest] = argv;
  const target = TARGETS[targetName];
  if (target === undefined) fail(USAGE);
  const options = { target, targetName, dir: target.dir, nodes: 3, tenant: 'default' };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--nodes') options.nodes = Number(rest[++i]);
    else if (arg === '--tenant') options.tenant = rest[++i];
    else if (arg.startsWith('--')) fail(`unknown option ${arg}\n${USAGE}`);
    else options.dir = resolve(arg);
  }
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > 16) fail('--nodes takes 1 to 16');
  try {
    new TokenTable({ 'checking-the-tenant-name': options.tenant }, false);
  } catch (error) {
    fail(`--tenant: ${error.message}`);
  }
  return options;
}

function fail(message) {
  process.stderr.write(`setup: ${message}\n`);
  process.exit(2);
}

/** A file this repository ships in place of a secret. */
function isPlaceholder(path) {
  return existsSync(path) && readFileSync(path).subarray(0, 7).toString('latin1') === 'REPLACE';
}

/** Root in a container writes into the user's folder: give the files to the folder's owner. */
function ownLikeFolder(path, folder) {
  if (process.getuid?.() !== 0) return;
  const { uid, gid } = statSync(folder);
  chownSync(path, uid, gid);
}

/** Sets `KEY=value` in an env file (one line, replaced in place or added), keeping the rest. */
function setEnv(file, key, value, { onlyIfMissing = false } = {}) {
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
  if (lines.at(-1) === '') lines.pop();
  const at = lines.findIndex((line) => line.startsWith(`${key}=`));
  if (at >= 0 && onlyIfMissing && !lines[at].slice(key.length + 1).startsWith('REPLACE')) return 'kept';
  if (at >= 0) lines[at] = `${key}=${value}`;
  else lines.push(`${key}=${value}`);
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return at >= 0 ? 'updated' : 'added';
}

async function main() {
  const { target, targetName, dir, nodes, tenant } = parse(process.argv.slice(2));
  if (!existsSync(dir)) fail(`${dir} does not exist`);
  const secrets = join(dir, 'secrets');
  const nodeKeys = join(secrets, 'node-keys');
  for (const folder of [secrets, nodeKeys]) {
    mkdirSync(folder, { recursive: true });
    ownLikeFolder(folder, dir);
  }
  chmodSync(secrets, target.dirMode);
  const report = [];
  const show = (path) => relative(dir, path) || '.';

  const keyFile = join(secrets, 'cluster.key');
  if (isPlaceholder(keyFile)) rmSync(keyFile);
  if (existsSync(keyFile)) report.push([show(keyFile), 'kept']);
  else {
    await writeClusterKeyFile(keyFile);
    report.push([show(keyFile), 'created']);
  }

  const tokensFile = join(secrets, 'tokens.json');
  if (isPlaceholder(tokensFile)) rmSync(tokensFile);
  if (existsSync(tokensFile)) report.push([show(tokensFile), 'kept']);
  else {
    const token = randomBytes(32).toString('base64url');
    writeFileSync(tokensFile, `${JSON.stringify({ [token]: tenant }, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    report.push([show(tokensFile), `created: one token for tenant ${tenant} (read it there)`]);
  }

  const addresses = [];
  for (let i = 0; i < nodes; i++) {
    const node = target.node(i);
    const file = join(nodeKeys, node);
    if (isPlaceholder(file)) rmSync(file);
    const existed = existsSync(file);
    const id = peerIdFromPrivateKey(await loadOrCreatePeerKey(file)).toString();
    addresses.push(target.peerAddress(node, id));
    report.push([show(file), `${existed ? 'kept' : 'created'}: node id ${id}`]);
  }

  for (const file of [keyFile, tokensFile, ...Array.from({ length: nodes }, (_, i) => join(nodeKeys, target.node(i)))]) {
    chmodSync(file, target.fileMode);
    ownLikeFolder(file, dir);
  }

  const envFile = join(dir, target.envFile);
  const joinState = setEnv(envFile, 'KAIROS_JOIN', addresses.join(','));
  const envReport = [`KAIROS_JOIN ${joinState}`];
  if (target.postgresPassword) {
    envReport.push(`POSTGRES_PASSWORD ${setEnv(envFile, 'POSTGRES_PASSWORD', randomBytes(24).toString('hex'), { onlyIfMissing: true })}`);
  }
  ownLikeFolder(envFile, dir);
  report.push([show(envFile), envReport.join(', ')]);

  const width = Math.max(...report.map(([path]) => path.length));
  process.stdout.write(`kairos setup (${targetName}) in ${dir}:\n`);
  for (const [path, what] of report) process.stdout.write(`  ${path.padEnd(width)}  ${what}\n`);
  process.stdout.write(
    targetName === 'compose'
      ? 'next: docker compose -f deploy/compose.yaml up -d (deploy/README.md)\n'
      : 'next: put DATABASE_URL in secrets/database.env, then kubectl apply -k deploy/kubernetes (deploy/README.md)\n',
  );
}

await main();
