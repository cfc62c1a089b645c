// The cell map file: what a node accepts, what it refuses (in one clear line, at start), and
// which cell serves a tenant.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CellMapFile, cellOf, parseCellMap } from '../../node/adapters/cell-map.ts';

const MAP = {
  version: 2,
  default: 'eu',
  cells: { eu: { urls: ['ws://10.0.0.1:7070'] }, us: { urls: ['wss://us.example:443', 'ws://10.1.0.1:7070'] } },
  tenants: { acme: 'us' },
};

describe('cell map', () => {
  it('names the cell of a listed tenant, and the default for the others', () => {
    const map = parseCellMap(JSON.stringify(MAP));
    expect(cellOf(map, 'acme')).toBe('us');
    expect(cellOf(map, 'globex')).toBe('eu');
    expect(map.cells.get('us')!.urls).toEqual(MAP.cells.us.urls);
  });

  it.each([
    ['not json', '{', /not JSON/],
    ['a version that is not an integer', { ...MAP, version: 1.5 }, /version must be a non-negative integer/],
    ['a default that is not a cell', { ...MAP, default: 'asia' }, /default names 'asia', which is not in cells/],
    ['no default', { version: 1, cells: MAP.cells }, /default \(the cell of tenants not listed\) is missing/],
    ['a misspelt key, which would send every tenant to the default cell', { ...MAP, tenant: { acme: 'us' } }, /the map has an unknown key 'tenant'/],
    ['a misspelt key in a cell', { ...MAP, cells: { ...MAP.cells, eu: { url: ['ws://10.0.0.1:7070'] } } }, /cells.eu has an unknown key 'url'/],
    ['a tenant in a cell that does not exist', { ...MAP, tenants: { acme: 'mars' } }, /tenants.acme names 'mars'/],
    ['a cell without URLs', { ...MAP, cells: { ...MAP.cells, eu: { urls: [] } } }, /cells.eu.urls must list 1 to/],
    ['a URL that is not ws://', { ...MAP, cells: { ...MAP.cells, eu: { urls: ['http://10.0.0.1'] } } }, /'http:\/\/10.0.0.1' is not a ws:\/\/ or wss:\/\/ URL/],
  ])('refuses %s', (_what, map, message) => {
    expect(() => parseCellMap(typeof map === 'string' ? map : JSON.stringify(map))).toThrow(message);
  });

  it("refuses to start a node whose cell is not in the map, and never takes a map that drops it", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kairos-cells-'));
    try {
      const path = join(dir, 'cells.json');
      await writeFile(path, JSON.stringify(MAP));
      await expect(CellMapFile.open(path, 'asia', { log() {} })).rejects.toThrow(`this node's cell 'asia' is not in cells`);
      const logged: string[] = [];
      const file = await CellMapFile.open(path, 'eu', { log: (_level, event) => logged.push(event) });
      expect(file.current.version).toBe(2);
      await file.reload();
      expect(logged).toEqual([]); // the same file again says nothing
      await writeFile(path, JSON.stringify({ ...MAP, version: 9, default: 'us', cells: { us: MAP.cells.us }, tenants: {} }));
      await file.reload();
      await file.reload();
      expect(file.current.version).toBe(2);
      expect(logged).toEqual(['cells.map_ignored']); // once
      // A tenant moves: a higher version is taken; an older one, or a half-written file, is not.
      await writeFile(path, JSON.stringify({ ...MAP, version: 3, tenants: { acme: 'eu' } }));
      await file.reload();
      expect(cellOf(file.current, 'acme')).toBe('eu');
      await writeFile(path, JSON.stringify({ ...MAP, version: 1 }));
      await file.reload();
      await writeFile(path, '{"version": 9, "defau');
      await file.reload();
      expect(file.current.version).toBe(3);
      file.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
