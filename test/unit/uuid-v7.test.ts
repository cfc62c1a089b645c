import { describe, expect, it } from 'vitest';
import { uuidV7 } from '../../protocol/sdk/uuid-v7.ts';

describe('uuidV7', () => {
  it('is an RFC 9562 version 7 UUID whose first 48 bits are the time in ms', () => {
    const nowMs = 1_796_000_000_123; // late 2026
    const key = uuidV7(nowMs);
    expect(key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(key.slice(0, 8) + key.slice(9, 13), 16)).toBe(nowMs);
  });

  it('sorts by time across milliseconds, and differs within one', () => {
    const keys = Array.from({ length: 1_000 }, (_, i) => uuidV7(1_796_000_000_000 + Math.floor(i / 10)));
    expect([...keys].sort((a, b) => (a < b ? -1 : 1)).map((k) => k.slice(0, 13))).toEqual(keys.map((k) => k.slice(0, 13)));
    expect(new Set(keys).size).toBe(keys.length);
  });
});
