// Golden byte fixtures: the wire format cannot change by accident. Each sample message is
// encoded and compared with test/fixtures/protocol/<name>.hex, and the file is decoded back to
// the sample. After a deliberate change of the format, regenerate the files with
//
//   UPDATE_GOLDEN=1 npx vitest run test/unit/protocol-golden.test.ts
//
// and review the diff: a changed fixture is a changed protocol, which needs a new version.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_GATEWAY_CONFIG } from '../../node/core/gateway/gateway.ts';
import { CLIENT_TO_NODE, NODE_TO_CLIENT, type Welcome } from '../../protocol/client-messages.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import { ERROR_CODE_NAMES } from '../../protocol/errors.ts';
import { ADVERTISED_LIMITS, CODEC_LIMITS } from '../../protocol/limits.ts';
import { PEER } from '../../protocol/peer-messages.ts';
import { decodeFromClient, decodeFromNode, decodeFromPeer } from '../../protocol/validate.ts';
import { NODE_TO_WORKER, WORKER_TO_NODE } from '../../protocol/worker-messages.ts';
import { fromHex, SAMPLES, toHex, type Direction } from './protocol-samples.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtures = join(root, 'test', 'fixtures', 'protocol');
const update = process.env['UPDATE_GOLDEN'] === '1';

const FAMILIES = [CLIENT_TO_NODE, WORKER_TO_NODE, NODE_TO_CLIENT, NODE_TO_WORKER, PEER];
const TYPES = new Set(FAMILIES.flatMap((family) => Object.keys(family)));

const DECODERS: Record<Direction, (bytes: Uint8Array) => unknown> = {
  'from-client': decodeFromClient,
  'from-node': decodeFromNode,
  'from-peer': decodeFromPeer,
};

/** A fixture: `#` comment lines, then hex in lines of 32 bytes. */
function fixtureText(name: string, from: Direction, bytes: Uint8Array): string {
  const lines = toHex(bytes).match(/.{1,64}/g) ?? [];
  return [`# ${name} (${from}), ${bytes.length} bytes`, ...lines, ''].join('\n');
}

function readFixture(file: string): Uint8Array {
  const hex = readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .join('')
    .replace(/\s+/g, '');
  return fromHex(hex);
}

describe('golden fixtures', () => {
  if (update) mkdirSync(fixtures, { recursive: true });

  for (const sample of SAMPLES) {
    it(`${sample.name} encodes to its fixture and decodes back`, () => {
      const file = join(fixtures, `${sample.name}.hex`);
      const bytes = encodeMessage(sample.message);
      if (update) writeFileSync(file, fixtureText(sample.name, sample.from, bytes));
      expect(existsSync(file), `${file} is missing: run with UPDATE_GOLDEN=1`).toBe(true);
      const golden = readFixture(file);
      expect(toHex(bytes)).toBe(toHex(golden));
      expect(DECODERS[sample.from](golden)).toEqual({ ok: true, msg: sample.message });
    });
  }

  it('every message type has a sample, and every fixture a sample', () => {
    const sampled = new Set<string>(SAMPLES.map((sample) => sample.message.t));
    expect([...TYPES].filter((t) => !sampled.has(t))).toEqual([]);
    const names = new Set(SAMPLES.map((sample) => `${sample.name}.hex`));
    expect(names.size).toBe(SAMPLES.length);
    expect(readdirSync(fixtures).filter((file) => !names.has(file))).toEqual([]);
  });

  it('PROTOCOL.md documents every message type and every error code', () => {
    const doc = readFileSync(join(root, 'protocol', 'PROTOCOL.md'), 'utf8');
    expect([...TYPES].filter((t) => !doc.includes(`### \`${t}\``))).toEqual([]);
    expect(ERROR_CODE_NAMES.filter((code) => !doc.includes(`| \`${code}\` |`))).toEqual([]);
  });

  it('welcome advertises the limits the code enforces (inflightMax: the default config)', () => {
    const welcome = SAMPLES.find((s) => s.message.t === 'welcome')!.message as Welcome;
    expect(welcome.limits).toEqual({ ...ADVERTISED_LIMITS, inflightMax: DEFAULT_GATEWAY_CONFIG.connInflightMax });
    expect(ADVERTISED_LIMITS.frameBytesMax).toBe(CODEC_LIMITS.frameBytesMax);
  });

  it("PROTOCOL.md's worked example shows the real bytes", () => {
    const doc = readFileSync(join(root, 'protocol', 'PROTOCOL.md'), 'utf8').replace(/\s+/g, '');
    for (const name of ['hello', 'welcome', 'submit', 'submitted', 'error']) {
      const sample = SAMPLES.find((s) => s.name === name)!;
      expect(doc, name).toContain(toHex(encodeMessage(sample.message)));
    }
  });
});
