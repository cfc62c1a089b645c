// Expected refusals are values, not exceptions: a caller's mistake or the system's state is an
// answer to give, not a crash to catch.

import type { ErrorBody, ErrorCode } from '../../protocol/errors.ts';

export function refusal(code: ErrorCode, message: string, retryAfterMs?: number): ErrorBody {
  return retryAfterMs === undefined ? { code, message } : { code, message, retryAfterMs };
}
