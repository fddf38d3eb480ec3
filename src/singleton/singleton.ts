import { EventEmitter } from 'eventemitter3';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { onWorkerStopping, workerLeads } from '../worker/worker.js';
import type { Lease, LeaseSource } from './lease.js';
import { abortError, delay } from './abort.js';

export interface RunContext {
  /** Aborts when this process must stop running the job: `close()`, or leadership lost. */
  signal: AbortSignal;
  /** Fencing token of this term: strictly greater than every earlier holder's. */
  token: number;
}

export type DemotionReason = 'closed' | 'failed' | 'lost';

export interface SingletonEvents {
  elected: (event: { token: number }) => void;
  demoted: (event: { token: number; reason: DemotionReason }) => void;
  error: (error: BellwetherError) => void;
}

export interface Backoff {
  /** Delay before contending again after the first failure, in ms. */
  initial: number;
  /** Upper bound of the doubling delay, in ms. */
  max: number;
}

type State = 'latent' | 'started' | 'closed';

/** How a singleton behaves beside its job: after failures, and towards the process's lifetime. */
export interface SingletonPolicy {
  backoff: Backoff;
  /** Hold the process alive from `start()` until `close()` has settled. */
  keepAlive: boolean;
}

/**
 * Runs `run` in exactly one process at a time: the holder of the lease.
 * Lifecycle `latent → started → closed`, as Curator's LeaderLatch.
 */
export class Singleton extends EventEmitter<SingletonEvents> {
  readonly name: string;
  readonly #source: LeaseSource;
  readonly #run: ((context: RunContext) => unknown) | undefined;
  readonly #policy: SingletonPolicy;
  readonly #closing = new AbortController();
  #state: State = 'latent';
  #lease: Lease | undefined;
  #loop: Promise<void> | undefined;
  /** With keepAlive: a ref'd handle, the one thing that holds the process for the singleton. */
  #keepAlive: NodeJS.Timeout | undefined;
  /** Its supervised worker is stopping: no new term may begin here (the job must not move into a leaving process). */
  #lastTerm = false;
  #unsubscribeStopping: (() => void) | undefined;

  /** @internal use `singleton()` */
  constructor(name: string, source: LeaseSource, run: ((context: RunContext) => unknown) | undefined, policy: SingletonPolicy) {
    super();
    this.name = name;
    this.#source = source;
    this.#run = run;
    this.#policy = policy;
  }

  /** True while this process holds the lease (and so runs the job). */
  get isLeader(): boolean {
    return this.#lease !== undefined;
  }

  /** The current term's fencing token while leader, else `undefined`. */
  get token(): number | undefined {
    return this.#lease?.token;
  }

  get state(): State {
    return this.#state;
  }

  /**
   * Checks the lock directory and file, then starts contending in the
   * background. Resolves without waiting to win.
   */
  async start(): Promise<void> {
    if (this.#state === 'closed') {
      throw new BellwetherError(ErrorCodes.CLOSED, `singleton ${this.name} was closed; create a new one to start again`);
    }
    if (this.#state === 'started') {
      throw new BellwetherError(ErrorCodes.ALREADY_STARTED, `singleton ${this.name} is already started`);
    }
    this.#source.prepare();
    this.#state = 'started';
    // A worker that begins a graceful stop contends no more: waiting, it leaves the queue at once;
    // leading, it finishes this term (the app's shutdown closes it) and starts no other.
    this.#unsubscribeStopping = onWorkerStopping(() => {
      this.#lastTerm = true;
      if (!this.isLeader) void this.close();
    });
    // Everything the singleton waits on (the flock waiter, the backoff timer)
    // is unref'd; with keepAlive one interval holds the process instead,
    // whether it waits, leads idle after run resolved, or backs off.
    if (this.#policy.keepAlive) this.#keepAlive = setInterval(() => {}, 2 ** 30);
    this.#loop = this.#contend();
  }

  /**
   * Stops contending; if leader, aborts `run`'s signal, waits for `run` to
   * settle, then releases the lease. Calling it again is harmless.
   */
  async close(): Promise<void> {
    this.#unsubscribeStopping?.();
    if (this.#state !== 'closed') {
      this.#state = 'closed';
      this.#closing.abort(abortError(`singleton ${this.name} closed`));
    }
    try {
      await this.#loop; // it ends by leaving the lease source
    } finally {
      // Only once the lease is released: until then close() itself holds the process.
      clearInterval(this.#keepAlive);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #contend(): Promise<void> {
    let failures = 0;
    while (this.#state === 'started' && !this.#lastTerm) {
      let lease: Lease;
      try {
        lease = await this.#source.acquire(this.#closing.signal);
      } catch (err) {
        if (this.#state !== 'started') break;
        this.#report(err instanceof BellwetherError ? err : callbackFailed(`contending for ${this.name}`, err));
        failures += 1;
        await this.#pause(failures);
        continue;
      }
      const reason = await this.#lead(lease);
      this.#lease = undefined;
      await lease.release();
      this.#notify('demoted', { token: lease.token, reason });
      if (reason === 'failed') {
        failures += 1;
        await this.#pause(failures);
      } else {
        failures = 0;
      }
    }
    // Closed, or the worker is stopping and this term is over: leave what the source still holds
    // (a fleet ballot kept after a lost lease would lead again, with nobody here to run the job).
    await this.#source.close?.();
  }

  /** Holds the lease until the job fails, leadership is lost, or we close. */
  async #lead(lease: Lease): Promise<DemotionReason> {
    this.#lease = lease;
    const stop = new AbortController();
    const closing = this.#closing.signal;
    const onClose = (): void => stop.abort(closing.reason);
    const onLost = (): void => stop.abort(lease.lost.reason ?? abortError(`singleton ${this.name} lost leadership`));
    closing.addEventListener('abort', onClose, { once: true });
    lease.lost.addEventListener('abort', onLost, { once: true });
    if (closing.aborted) onClose();
    if (lease.lost.aborted) onLost();
    const leading = workerLeads();
    try {
      this.#notify('elected', { token: lease.token });
      const run = this.#run;
      if (run && !stop.signal.aborted) {
        const context: RunContext = { signal: stop.signal, token: lease.token };
        try {
          // The lease is released only once run has settled: never two runs at once.
          await run(context);
        } catch (err) {
          if (!stop.signal.aborted) {
            this.#report(callbackFailed(`run of singleton ${this.name}`, err));
            return 'failed';
          }
          if (!isAbortReason(err, stop.signal)) this.#report(callbackFailed(`run of singleton ${this.name}`, err));
        }
      }
      // run resolved: stay leader, idle, until closed or lost.
      if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
      return closing.aborted ? 'closed' : 'lost';
    } finally {
      leading();
      closing.removeEventListener('abort', onClose);
      lease.lost.removeEventListener('abort', onLost);
    }
  }

  #pause(failures: number): Promise<void> {
    const { backoff } = this.#policy;
    const ms = Math.min(backoff.max, backoff.initial * 2 ** Math.min(failures - 1, 30));
    return delay(ms, this.#closing.signal);
  }

  /** A listener that throws must not break the contention loop. */
  #notify<E extends 'elected' | 'demoted'>(event: E, payload: Parameters<SingletonEvents[E]>[0]): void {
    try {
      (this.emit as (event: E, payload: unknown) => boolean)(event, payload);
    } catch (err) {
      this.#report(callbackFailed(`${event} listener of singleton ${this.name}`, err));
    }
  }

  /** @internal errors of what the singleton stands on (the election) */
  report(error: BellwetherError): void {
    this.#report(error);
  }

  #report(error: BellwetherError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    // Nothing lost: without a listener the error still reaches stderr.
    else process.emitWarning(error);
  }
}

function isAbortReason(err: unknown, signal: AbortSignal): boolean {
  return err === signal.reason || (err instanceof Error && err.name === 'AbortError');
}
