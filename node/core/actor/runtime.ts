// A small actor runtime. Each actor has a mailbox and handles one message at a time; handlers
// do not await. An effect (a store call, a timer) is started from a handler and its result
// comes back later as a message, so an owner keeps accepting submissions while its last batch
// commits, and the order of events is explicit: the simulator replays it exactly.
//
// Scheduling goes through env.timers.defer, so the same code runs on the event loop in
// production and on the simulator's virtual event queue.

import type { Env, TimerId } from '../env.ts';

export interface Actor<M> {
  receive(message: M, ctx: ActorContext<M>): void;
  /** Checked after every message (TigerBeetle's habit): throws when the state is impossible. */
  invariants?(): void;
  /** Called once when the actor is stopped; timers and pipes are already cancelled. */
  stopped?(): void;
  /** A message that will never be handled: left in the mailbox at stop, or sent after it.
   * An actor whose messages carry reply callbacks answers them here, so that no asker waits
   * forever for an actor that is gone. */
  deadLetter?(message: M): void;
}

export interface ActorRef<M> {
  readonly name: string;
  tell(message: M): void;
  readonly alive: boolean;
}

export interface ActorContext<M> {
  readonly self: ActorRef<M>;
  readonly env: Env;
  /** Run an effect; its outcome returns as a message. Dropped if the actor stopped first. */
  pipe<T>(effect: () => Promise<T>, done: (value: T) => M, failed: (error: unknown) => M): void;
  /** Start (or restart) the timer named `key`; on firing, `message` is delivered. */
  startTimer(key: string, delayMs: number, message: M): void;
  cancelTimer(key: string): void;
  hasTimer(key: string): boolean;
  stop(): void;
}

/** Messages handled per turn before yielding, so one busy actor cannot starve the others or
 * the I/O that delivers their effects. */
const TURN_MESSAGES_MAX = 256;

export class ActorSystem {
  private readonly cells = new Set<ActorCell<any>>();

  constructor(readonly env: Env) {}

  spawn<M>(name: string, actor: Actor<M>): ActorRef<M> {
    const cell = new ActorCell<M>(name, actor, this.env, (c) => this.cells.delete(c));
    this.cells.add(cell);
    return cell.ref;
  }

  /** Stop every actor (a crash in the simulator; shutdown in production). */
  stopAll(): void {
    for (const cell of [...this.cells]) cell.stop();
  }

  get size(): number {
    return this.cells.size;
  }
}

class ActorCell<M> implements ActorContext<M> {
  private readonly mailbox: M[] = [];
  private mailboxHead = 0;
  private scheduled = false;
  private running = true;
  private readonly timers = new Map<string, TimerId>();
  readonly ref: ActorRef<M>;

  constructor(
    readonly name: string,
    private readonly actor: Actor<M>,
    readonly env: Env,
    private readonly onStopped: (cell: ActorCell<M>) => void,
  ) {
    const cell = this;
    this.ref = {
      name,
      tell: (message: M) => cell.enqueue(message),
      get alive() {
        return cell.running;
      },
    };
  }

  get self(): ActorRef<M> {
    return this.ref;
  }

  private enqueue(message: M): void {
    if (!this.running) return this.actor.deadLetter?.(message);
    this.mailbox.push(message);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.env.timers.defer(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    let handled = 0;
    while (this.running && this.mailboxHead < this.mailbox.length && handled < TURN_MESSAGES_MAX) {
      const message = this.mailbox[this.mailboxHead]!;
      this.mailbox[this.mailboxHead] = undefined as M;
      this.mailboxHead++;
      handled++;
      this.actor.receive(message, this);
      this.actor.invariants?.();
    }
    if (this.mailboxHead === this.mailbox.length) {
      this.mailbox.length = 0;
      this.mailboxHead = 0;
    } else if (this.running) {
      this.schedule();
    }
  }

  pipe<T>(effect: () => Promise<T>, done: (value: T) => M, failed: (error: unknown) => M): void {
    let promise: Promise<T>;
    try {
      promise = effect();
    } catch (error) {
      // An effect that throws synchronously failed like one that rejects: same path.
      promise = Promise.reject(error);
    }
    promise.then(
      (value) => this.enqueue(done(value)),
      (error: unknown) => this.enqueue(failed(error)),
    );
  }

  startTimer(key: string, delayMs: number, message: M): void {
    if (!this.running) return;
    this.cancelTimer(key);
    const id = this.env.timers.setTimer(Math.max(0, delayMs), () => {
      this.timers.delete(key);
      this.enqueue(message);
    });
    this.timers.set(key, id);
  }

  cancelTimer(key: string): void {
    const id = this.timers.get(key);
    if (id === undefined) return;
    this.env.timers.cancelTimer(id);
    this.timers.delete(key);
  }

  hasTimer(key: string): boolean {
    return this.timers.has(key);
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    for (const id of this.timers.values()) this.env.timers.cancelTimer(id);
    this.timers.clear();
    const unhandled = this.mailbox.slice(this.mailboxHead);
    this.mailbox.length = 0;
    this.mailboxHead = 0;
    this.onStopped(this);
    this.actor.stopped?.();
    if (this.actor.deadLetter !== undefined) for (const message of unhandled) this.actor.deadLetter(message);
  }
}
