import { EventEmitter } from 'eventemitter3';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { type Logger, NO_LOG, reportError } from '../log/logger.js';
import { onWorkerStopping, workerLeads } from '../worker/worker.js';
import type { Lease, LeaseSource } from './lease.js';
import { abortError, delay } from './abort.js';
import { type EndedTerm, gapSince } from './fence.js';
import { isRefusal } from '../zk/zk-errors.js';

export interface RunContext {
  /** Aborts when this process must stop running the job: `close()`, or leadership lost. */
  signal: AbortSignal;
  /**
   * Fencing token of this term: strictly greater than every earlier holder's,
   * except for `host+cluster` under a Supervisor's fleet ballot, where it is
   * the fleet term (the ballot's czxid), shared by the workers that hold the
   * host lock in turn during it. Use `fence`.
   */
  token: number;
  /**
   * Fencing value, strictly greater than every earlier holder's in every
   * scope: 'host' the lock generation, 'cluster' the ballot's czxid << 32,
   * 'host+cluster' (czxid << 32) + the host lock generation.
   */
  fence: bigint;
}

export type DemotionReason = 'closed' | 'failed' | 'lost';

/** One run of the job (of `run`, or of the task in its thread). */
export interface RunRecord {
  /** Fencing token of the term it ran in. */
  token: number;
  /** When it started (ms since the epoch). */
  startedAt: number;
  /** How long it took, once it has settled. */
  durationMs: number | undefined;
  /** `stopped`: it ended because leadership did (its signal aborted). */
  outcome: 'running' | 'succeeded' | 'failed' | 'stopped';
}

export interface SingletonEvents {
  /**
   * The term's `fence` is `job.fence` meanwhile (not in the event: JSON.stringify of an event must not throw on a bigint).
   * `handoverGapMs`: only when this process's previous term of the singleton came right before this one (no
   * other runner between, by the fences): how long nobody ran it. A takeover from another process has none.
   */
  elected: (event: { token: number; handoverGapMs?: number }) => void;
  demoted: (event: { token: number; reason: DemotionReason }) => void;
  /** A run settled. */
  ran: (run: RunRecord) => void;
  error: (error: BellwetherError) => void;
}

/** @internal What the leader runs: `run` itself, or a task in a thread (which ends with the term). */
export interface Job {
  run(context: RunContext): unknown;
  /** Awaited before the lease is released: whatever the job left running is gone by then. */
  endTerm?(): Promise<void>;
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
  /** Run again this many ms after the previous run started (or when it ended, if later), while leader; else once per term. */
  every?: number;
}

/**
 * Runs `run` in exactly one process at a time: the holder of the lease.
 * Lifecycle `latent → started → closed`, as Curator's LeaderLatch.
 */
export class Singleton extends EventEmitter<SingletonEvents> {
  readonly name: string;
  readonly #source: LeaseSource;
  readonly #job: Job | undefined;
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
  #lastRun: RunRecord | undefined;
  /** performance.now() when the last run began: `every` counts from there. */
  #lastRunBegan = 0;
  #runs = 0;
  #runFailures = 0;
  #elections = 0;
  readonly #stepDowns: Record<DemotionReason, number> = { closed: 0, failed: 0, lost: 0 };
  /** When this process's last term here ended (performance.now()), and its fence: the next term may follow it directly. */
  #lastTermEnd: EndedTerm | undefined;
  readonly #scope: string;
  #log: Logger;

  /** @internal use `singleton()` */
  constructor(name: string, source: LeaseSource, job: Job | undefined, policy: SingletonPolicy, logging: { scope: string; logger: Logger | undefined }) {
    super();
    this.name = name;
    this.#source = source;
    this.#job = job;
    this.#policy = policy;
    this.#scope = logging.scope;
    this.#log = logging.logger ? this.#bound(logging.logger) : NO_LOG;
  }

  /** @internal A logger for a singleton that was given none (an adapter's default: Fastify's `app.log`). */
  adoptLogger(logger: Logger): void {
    if (this.#log === NO_LOG) this.#log = this.#bound(logger);
  }

  /** @internal Its logger, with `{ singleton, scope }`: what it stands on (its Candidate) logs there too. */
  get log(): Logger {
    return this.#log;
  }

  #bound(logger: Logger): Logger {
    return logger.child({ singleton: this.name, scope: this.#scope });
  }

  /** The last run in this process (the current one while it runs), or `undefined` before the first. */
  get lastRun(): RunRecord | undefined {
    return this.#lastRun && { ...this.#lastRun };
  }

  /** Times this process was elected (terms begun here). */
  get elections(): number {
    return this.#elections;
  }

  /** Terms that ended in this process, by reason (the `demoted` events so far). */
  get stepDowns(): Readonly<Record<DemotionReason, number>> {
    return { ...this.#stepDowns };
  }

  /** Runs started in this process. */
  get runs(): number {
    return this.#runs;
  }

  /** Runs in this process that failed (threw, or their thread crashed). */
  get runFailures(): number {
    return this.#runFailures;
  }

  /** True while this process holds the lease (and so runs the job). */
  get isLeader(): boolean {
    return this.#lease !== undefined;
  }

  /** The current term's fencing token while leader, else `undefined`. */
  get token(): number | undefined {
    return this.#lease?.token;
  }

  /** The current term's fence (see `RunContext.fence`) while leader, else `undefined`. */
  get fence(): bigint | undefined {
    return this.#lease?.fence;
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
    // Node 20 makes the performance global on its first use (measured: about 1.8 ms):
    // here, rather than between a takeover and run().
    performance.now();
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
        const error = err instanceof BellwetherError ? err : callbackFailed(`contending for ${this.name}`, err);
        this.#report(error);
        if (isRefusal(error.code) || error.code === ErrorCodes.INVALID_OPTION) {
          // ZooKeeper refused the election (its ACL, the credentials), or the primary's Candidate refused an
          // option of ours (its acl, checked against its session): every later try would be refused too.
          void this.close();
          break;
        }
        failures += 1;
        await this.#pause(failures);
        continue;
      }
      const reason = await this.#lead(lease);
      this.#lease = undefined;
      await lease.release();
      this.#stepDowns[reason] += 1;
      const cause = reason === 'lost' && lease.lost.reason instanceof Error ? lease.lost.reason.message : undefined;
      this.#log[reason === 'closed' ? 'info' : 'warn'](
        { event: 'demoted', token: lease.token, reason, ...(cause === undefined ? {} : { cause }) },
        `singleton ${this.name} demoted (token ${lease.token}): ${reason}${cause === undefined ? '' : `: ${cause}`}`,
      );
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
    const gap = gapSince(this.#lastTermEnd, lease.fence);
    const leading = workerLeads(this.name, lease.fence);
    try {
      this.#elections += 1;
      const handover = gap === undefined ? {} : { handoverGapMs: gap };
      this.#log.info({ event: 'elected', token: lease.token, fence: String(lease.fence), ...handover }, `singleton ${this.name} elected (token ${lease.token})`);
      this.#notify('elected', { token: lease.token, ...handover });
      const job = this.#job;
      const context: RunContext = { signal: stop.signal, token: lease.token, fence: lease.fence };
      // The lease is released only once each run has settled (and the job's term has ended): never two runs at once.
      for (let first = true; job && !stop.signal.aborted; first = false) {
        if (!first) {
          if (this.#policy.every === undefined) break;
          // Every `every` ms from the previous start; a run that took longer is followed at once. Never two at once.
          await delay(Math.max(0, this.#lastRunBegan + this.#policy.every - performance.now()), stop.signal);
          if (stop.signal.aborted) break;
        }
        if (!(await this.#runOnce(job, context))) return 'failed';
      }
      // run resolved: stay leader, idle, until closed or lost.
      if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
      return closing.aborted ? 'closed' : 'lost';
    } finally {
      try {
        await this.#job?.endTerm?.();
      } catch (err) {
        this.#report(callbackFailed(`end of the term of singleton ${this.name}`, err));
      } finally {
        // Nothing of the job runs any more: from here nobody runs it until the next term begins.
        this.#lastTermEnd = { fence: lease.fence, at: performance.now() };
        leading();
        closing.removeEventListener('abort', onClose);
        lease.lost.removeEventListener('abort', onLost);
      }
    }
  }

  /** One run, recorded; false if it failed while still leader (the term ends, and the singleton backs off). */
  async #runOnce(job: Job, context: RunContext): Promise<boolean> {
    const { signal } = context;
    const record: RunRecord = { token: context.token, startedAt: Date.now(), durationMs: undefined, outcome: 'running' };
    const began = performance.now();
    this.#lastRunBegan = began;
    this.#lastRun = record;
    this.#runs += 1;
    const settle = (outcome: RunRecord['outcome']): void => {
      record.outcome = outcome;
      record.durationMs = performance.now() - began;
      if (outcome === 'failed') this.#runFailures += 1;
      this.#notify('ran', { ...record });
    };
    try {
      await job.run(context);
      settle(signal.aborted ? 'stopped' : 'succeeded');
      return true;
    } catch (err) {
      if (!signal.aborted) {
        settle('failed');
        this.#report(callbackFailed(`run of singleton ${this.name}`, err));
        return false;
      }
      settle('stopped');
      if (err instanceof BellwetherError && err.code === ErrorCodes.TASK_TERMINATED) {
        this.#report(new BellwetherError(err.code, `singleton ${this.name}: ${err.message}`));
      } else if (!isAbortReason(err, signal)) this.#report(callbackFailed(`run of singleton ${this.name}`, err));
      return true;
    }
  }

  #pause(failures: number): Promise<void> {
    const { backoff } = this.#policy;
    const ms = Math.min(backoff.max, backoff.initial * 2 ** Math.min(failures - 1, 30));
    return delay(ms, this.#closing.signal);
  }

  /** A listener that throws must not break the contention loop. */
  #notify<E extends 'elected' | 'demoted' | 'ran'>(event: E, payload: Parameters<SingletonEvents[E]>[0]): void {
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
    reportError(this, this.#log, error);
  }
}

function isAbortReason(err: unknown, signal: AbortSignal): boolean {
  return err === signal.reason || (err instanceof Error && err.name === 'AbortError');
}
