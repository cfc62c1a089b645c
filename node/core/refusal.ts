// Expected refusals are values, not exceptions (STYLE.md, "Errors, three kinds").

import type { ErrorBody, ErrorCode } from '../../protocol/errors.ts';

export function refusal(code: ErrorCode, message: string, retryAfterMs?: number): ErrorBody {
  return retryAfterMs === undefined ? { code, message } : { code, message, retryAfterMs };
}
