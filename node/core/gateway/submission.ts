// A validated SubmitSpec from the wire, with every default filled in, as the shard owner takes it.

import { retryPolicyOf, type SubmitSpec } from '../../../protocol/client-messages.ts';
import type { Submission } from '../owner/owner-messages.ts';

export function submissionOf(spec: SubmitSpec): Submission {
  return {
    queue: spec.queue,
    payload: spec.payload,
    priority: spec.priority ?? 0,
    runAtMs: spec.runAt ?? null,
    delayMs: spec.delayMs ?? 0,
    idempotencyKey: spec.idempotencyKey ?? null,
    retry: retryPolicyOf(spec.retry),
  };
}
