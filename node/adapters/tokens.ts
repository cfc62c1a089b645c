// Bearer tokens and the tenants they stand for. Configured by a JSON file
// (`{"<token>": "<tenant>", ...}`, path in KAIROS_TOKENS_FILE or --tokens) or by the
// environment (KAIROS_TOKENS="<token>=<tenant>,<token>=<tenant>"). With neither, a node runs
// with the development token `dev-token` for tenant `dev`, and says so in its log.

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const DEV_TOKEN = 'dev-token';
export const DEV_TENANT = 'dev';
const NAME_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export class TokenConfigError extends Error {
  override readonly name = 'TokenConfigError';
}

export class TokenTable {
  private readonly entries: Array<[token: Buffer, tenant: string]>;

  constructor(
    table: Record<string, string>,
    /** True when this is the development default. */
    readonly development: boolean,
  ) {
    this.entries = Object.entries(table).map(([token, tenant]) => {
      if (token.length < 8) throw new TokenConfigError('tokens must be at least 8 characters');
      if (!NAME_PATTERN.test(tenant)) throw new TokenConfigError(`tenant name '${tenant}' must match ${NAME_PATTERN}`);
      return [Buffer.from(token), tenant];
    });
    if (this.entries.length === 0) throw new TokenConfigError('no tokens configured');
  }

  /** The tenant of a token, or null. Compares in constant time per entry, so response timing
   * does not reveal how much of a guessed token was right. */
  tenantOf(token: string | null): string | null {
    if (token === null) return null;
    const given = Buffer.from(token);
    let found: string | null = null;
    for (const [known, tenant] of this.entries) {
      if (known.length === given.length && timingSafeEqual(known, given)) found = tenant;
    }
    return found;
  }
}

export function loadTokens(env: Record<string, string | undefined>, file: string | undefined): TokenTable {
  const path = file ?? env.KAIROS_TOKENS_FILE;
  if (path !== undefined && path !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (error) {
      throw new TokenConfigError(`cannot read tokens file ${path}: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
      throw new TokenConfigError(`tokens file ${path} must be a JSON object of "token": "tenant"`);
    }
    return new TokenTable(parsed as Record<string, string>, false);
  }
  const inline = env.KAIROS_TOKENS;
  if (inline !== undefined && inline !== '') {
    const table: Record<string, string> = {};
    for (const pair of inline.split(',')) {
      const eq = pair.lastIndexOf('=');
      if (eq <= 0) throw new TokenConfigError(`KAIROS_TOKENS entries are token=tenant, got '${pair}'`);
      table[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
    }
    return new TokenTable(table, false);
  }
  return new TokenTable({ [DEV_TOKEN]: DEV_TENANT }, true);
}
