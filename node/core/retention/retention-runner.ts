// Retention on a schedule: every node runs this actor, and the store lets one node at a time
// do the work (Postgres: an advisory lock), so partitions are created ahead and expired ones
// dropped without a coordinator.

import type { Actor, ActorContext } from '../actor/runtime.ts';
import type { RetentionOptions, RetentionReport } from '../store.ts';

export interface RetentionConfig extends RetentionOptions {
  everyMs: number;
}

export const DEFAULT_RETENTION_CONFIG: RetentionConfig = {
  everyMs: 60 * 60_000,
  daysAhead: 3,
  keepDays: 30,
};

/** `--retention-days` bounds: every kept day is a partition the planner may have to consider,
 * so years of them would slow every statement; a year is the most a node accepts. */
export const RETENTION_DAYS_MAX = 366;

export type RetentionMsg = { kind: 'run' } | { kind: 'done'; report: RetentionReport } | { kind: 'failed'; error: unknown };

export class RetentionRunner implements Actor<RetentionMsg> {
  constructor(private readonly config: RetentionConfig) {}

  receive(msg: RetentionMsg, ctx: ActorContext<RetentionMsg>): void {
    switch (msg.kind) {
      case 'run':
        ctx.pipe(
          () => ctx.env.store.retention(this.config),
          (report) => ({ kind: 'done', report }),
          (error) => ({ kind: 'failed', error }),
        );
        return;
      case 'done': {
        const { created, dropped, keptLive, ran } = msg.report;
        if (ran && created.length + dropped.length + keptLive.length > 0) {
          ctx.env.logger.log('info', 'retention.ran', { created, dropped, keptLive });
        }
        ctx.startTimer('next', this.config.everyMs, { kind: 'run' });
        return;
      }
      case 'failed':
        ctx.env.logger.log('warn', 'retention.failed', { error: String(msg.error) });
        ctx.startTimer('next', this.config.everyMs, { kind: 'run' });
        return;
    }
  }
}
