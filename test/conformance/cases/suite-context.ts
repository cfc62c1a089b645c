// What every group of conformance cases gets from the suite, and helpers they share.

import { expect } from 'vitest';
import type { CommitBatch, CommitResult, Page, ShardLease, Store, WriteOutcome } from '../../../node/core/store.ts';

export interface SuiteContext {
  shardCount: number;
  baseMs: number;
  open(): Promise<Store>;
  lapseLeases(shards: number[]): Promise<void>;
}

export const LEASE_MS = 60_000;

/** Acquires shards that the test expects to be free; fails the test otherwise. */
export async function own(store: Store, owner: string, shards: number[]): Promise<ShardLease[]> {
  const won = await store.acquireShards(owner, shards, LEASE_MS);
  expect(won.map((l) => l.shard).sort((a, b) => a - b)).toEqual([...shards].sort((a, b) => a - b));
  return won;
}

/** Commits a batch that the test expects to commit, and returns its outcomes. */
export async function committed(store: Store, batch: CommitBatch): Promise<WriteOutcome[]> {
  const result = await store.commit(batch);
  expect(result.status).toBe('committed');
  return (result as Extract<CommitResult, { status: 'committed' }>).outcomes;
}

export const OK: WriteOutcome = { ok: true };
export const CONFLICT: WriteOutcome = { ok: false, reason: 'conflict' };
export const duplicateOf = (existingJobId: string): WriteOutcome => ({ ok: false, reason: 'duplicate', existingJobId });

/** A deterministic permutation (tests must not depend on Math.random). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const j = (state >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Runs `write` on every item, eight at a time (as an owner with several connections would),
 * and returns the outcomes in the items' order. */
export async function eightAtOnce<T, O>(items: readonly T[], write: (item: T) => Promise<O>): Promise<O[]> {
  const outcomes: O[] = [];
  let next = 0;
  const writer = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) outcomes[i] = await write(items[i]!);
  };
  await Promise.all(Array.from({ length: 8 }, writer));
  return outcomes;
}

/** Every item of a paged list, each page checked to hold at most `limit`. */
export async function allPages<T>(limit: number, page: (after: string | null) => Promise<Page<T>>): Promise<T[]> {
  const all: T[] = [];
  let after: string | null = null;
  do {
    const got: Page<T> = await page(after);
    expect(got.items.length).toBeLessThanOrEqual(limit);
    all.push(...got.items);
    after = got.next;
  } while (after !== null);
  return all;
}

/** `items` in the order of `key`: for comparing what a store returns in no promised order. */
export function sortedBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  return [...items].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}
