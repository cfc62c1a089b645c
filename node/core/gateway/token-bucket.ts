// Per-tenant token buckets: a tenant may submit `perSecond` jobs a second on average and
// `burst` at once. Time comes from the caller (the environment's monotonic clock).

export interface RateLimit {
  perSecond: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly limit: RateLimit) {}

  /** Takes `n` tokens for `tenant` at `nowMs`: 0 when granted, else how long until they would
   * be (nothing is taken then, so a refused request costs the tenant nothing). */
  take(tenant: string, n: number, nowMs: number): number {
    const { perSecond, burst } = this.limit;
    const bucket = this.buckets.get(tenant) ?? { tokens: burst, atMs: nowMs };
    bucket.tokens = Math.min(burst, bucket.tokens + ((nowMs - bucket.atMs) * perSecond) / 1000);
    bucket.atMs = nowMs;
    this.buckets.set(tenant, bucket);
    if (bucket.tokens >= n) {
      bucket.tokens -= n;
      return 0;
    }
    if (n > burst) return Math.ceil((n * 1000) / perSecond);
    return Math.max(1, Math.ceil(((n - bucket.tokens) * 1000) / perSecond));
  }
}
