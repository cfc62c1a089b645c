// The cell map: which cell serves each tenant. A cell is a whole Kairos cluster with a
// PostgreSQL of its own; every node of every cell reads the same map file, and serves only its
// own cell's tenants (cell-routing.ts sends the others on). The file is JSON:
//
//   { "version": 3, "default": "eu-1",
//     "cells": { "eu-1": { "urls": ["ws://10.0.1.5:7070"] }, "us-1": { "urls": ["ws://10.1.1.5:7070"] } },
//     "tenants": { "acme": "us-1" } }
//
// A tenant not listed belongs to `default`; any other key is refused, so a misspelt one is an
// error, not an empty section. The node re-reads the file every few seconds and takes it only
// when its version is higher and it still names the node's own cell, so a half-written or older
// copy changes nothing (each is logged once).

import { readFile } from 'node:fs/promises';
import type { Logger } from '../core/env.ts';
import { LABEL_CHARS_MAX, URL_CHARS_MAX, ADDRS_MAX } from '../../protocol/limits.ts';

const RELOAD_EVERY_MS = 5_000;

export interface CellMap {
  version: number;
  defaultCell: string;
  cells: ReadonlyMap<string, { urls: string[] }>;
  tenants: ReadonlyMap<string, string>;
}

/** The cell that serves `tenant`. */
export function cellOf(map: CellMap, tenant: string): string {
  return map.tenants.get(tenant) ?? map.defaultCell;
}

/** Parses and checks a map; throws an Error that says what is wrong. */
export function parseCellMap(text: string): CellMap {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`cell map: not JSON: ${(error as Error).message}`);
  }
  /** An object with only the keys `allowed`, when given: a misspelt key must not pass as absent
   * (a map without `tenants` sends every tenant to the default cell). */
  const record = (v: unknown, what: string, allowed?: readonly string[]): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`cell map: ${what} must be an object`);
    const unknown = allowed === undefined ? undefined : Object.keys(v).find((key) => !allowed.includes(key));
    if (unknown !== undefined) throw new Error(`cell map: ${what} has an unknown key '${unknown}' (it takes ${allowed!.join(', ')})`);
    return v as Record<string, unknown>;
  };
  const top = record(value, 'the map', ['version', 'default', 'cells', 'tenants']);
  const version = top.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) throw new Error('cell map: version must be a non-negative integer');
  const cells = new Map<string, { urls: string[] }>();
  for (const [name, cell] of Object.entries(record(top.cells, 'cells'))) {
    if (name === '' || name.length > LABEL_CHARS_MAX) throw new Error(`cell map: cell name '${name}' must have 1 to ${LABEL_CHARS_MAX} characters`);
    const urls = record(cell, `cells.${name}`, ['urls']).urls;
    if (!Array.isArray(urls) || urls.length === 0 || urls.length > ADDRS_MAX) throw new Error(`cell map: cells.${name}.urls must list 1 to ${ADDRS_MAX} URLs`);
    for (const url of urls) {
      if (typeof url !== 'string' || url.length > URL_CHARS_MAX || !/^wss?:\/\/./.test(url)) throw new Error(`cell map: cells.${name}.urls: '${String(url)}' is not a ws:// or wss:// URL`);
    }
    cells.set(name, { urls: urls as string[] });
  }
  const known = (cell: unknown, what: string): string => {
    if (typeof cell !== 'string' || !cells.has(cell)) throw new Error(`cell map: ${what} names '${String(cell)}', which is not in cells`);
    return cell;
  };
  const tenants = new Map<string, string>();
  for (const [tenant, cell] of Object.entries(record(top.tenants ?? {}, 'tenants'))) tenants.set(tenant, known(cell, `tenants.${tenant}`));
  if (top.default === undefined) throw new Error('cell map: default (the cell of tenants not listed) is missing');
  return { version, defaultCell: known(top.default, 'default'), cells, tenants };
}

/** A map file, read at start and re-read every few seconds. */
export class CellMapFile {
  private map: CellMap;
  private readonly timer: ReturnType<typeof setInterval>;

  /** The last text read that was not taken, so that it is reported once. */
  private ignored: string | null = null;
  /** The text of the map in use. */
  private taken: string;

  private constructor(
    private readonly path: string,
    private readonly cell: string,
    first: { map: CellMap; text: string },
    private readonly logger: Logger,
  ) {
    this.map = first.map;
    this.taken = first.text;
    this.timer = setInterval(() => void this.reload(), RELOAD_EVERY_MS);
    this.timer.unref();
  }

  /** Reads the file; a map that cannot be read or that does not name `cell` fails the start. */
  static async open(path: string, cell: string, logger: Logger): Promise<CellMapFile> {
    let map: CellMap;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
      map = parseCellMap(text);
    } catch (error) {
      throw new Error(`cell map ${path}: ${(error as Error).message.replace(/^cell map: /, '')}`);
    }
    if (!map.cells.has(cell)) throw new Error(`cell map ${path}: this node's cell '${cell}' is not in cells`);
    return new CellMapFile(path, cell, { map, text }, logger);
  }

  get current(): CellMap {
    return this.map;
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Reads the file again (the timer does, every few seconds): a higher version replaces the
   * map; an older, equal or unreadable one changes nothing. */
  async reload(): Promise<void> {
    let text = '';
    try {
      text = await readFile(this.path, 'utf8');
      const next = parseCellMap(text);
      if (next.version <= this.map.version) {
        // The same file again is the common case; a changed one whose version was not raised
        // is a mistake worth one line.
        if (next.version === this.map.version && text === this.taken) return;
        return this.ignore(text, 'cells.map_ignored', { version: next.version, kept: this.map.version, why: 'its version is not higher than the one in use' });
      }
      if (!next.cells.has(this.cell)) return this.ignore(text, 'cells.map_ignored', { version: next.version, kept: this.map.version, why: `it does not name this node's cell '${this.cell}'` });
      this.logger.log('info', 'cells.map_changed', { from: this.map.version, to: next.version });
      this.map = next;
      this.taken = text;
    } catch (error) {
      this.ignore(text, 'cells.map_unreadable', { path: this.path, error: (error as Error).message, kept: this.map.version });
    }
  }

  private ignore(text: string, event: string, fields: Record<string, unknown>): void {
    if (text === this.ignored) return;
    this.ignored = text;
    this.logger.log('warn', event, fields);
  }
}
