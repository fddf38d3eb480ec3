import { once } from 'node:events';
import type { ResourceLimits, Worker } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { abortError } from './abort.js';
import type { Job, RunContext } from './singleton.js';
import type { TaskMessage } from './task-thread.js';

const THREAD_ENTRY = new URL('./task-thread.js', import.meta.url).href;

export interface TaskRunnerOptions {
  /** The task module, as a file: URL. */
  module: string;
  /** ms a task gets to settle after leadership ends before its thread is terminated. */
  stopTimeout: number;
  /** Keep the thread between runs of a term (`every`); otherwise each run ends with its thread. */
  keepThread: boolean;
  resourceLimits?: ResourceLimits;
}

/**
 * Runs a singleton's task in a worker thread of a piscina pool of one. The
 * pool lives for a term at most: the term ends only once its thread is gone,
 * so the next leader's task never runs beside this one, whatever this one
 * does (spins, ignores its signal, left timers behind).
 */
export class TaskRunner implements Job {
  readonly #options: TaskRunnerOptions;
  #pool: Piscina | undefined;
  /** The pool reported an error of its own: it starts no thread any more. */
  #poolFailed = false;
  /** Exits of every thread the pool started: awaited before a term ends. */
  readonly #exits = new Map<Worker, Promise<unknown>>();

  constructor(options: TaskRunnerOptions) {
    this.#options = options;
  }

  async run({ signal, token, fence }: RunContext): Promise<void> {
    // Loaded on first use: a process without tasks never loads piscina.
    const { Piscina } = await import('piscina');
    if (signal.aborted) return;
    // A pool whose idle thread failed between runs (piscina stops starting threads then): a new one.
    if (this.#poolFailed) await this.endTerm();
    const pool = (this.#pool ??= this.#watched(new Piscina({
      filename: THREAD_ENTRY,
      // No thread before the first run, and none started in place of one terminated.
      minThreads: 0,
      maxThreads: 1,
      // One thread for the term (or the run): piscina must not retire it in between.
      idleTimeout: 2 ** 31 - 1,
      ...(this.#options.resourceLimits ? { resourceLimits: this.#options.resourceLimits } : {}),
    })));
    const leading = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const terminate = new AbortController();
    let deadline: NodeJS.Timeout | undefined;
    let onPoolError: ((err: unknown) => void) | undefined;
    const onEnd = (): void => {
      // stillLeader() turns false at once; the thread's signal aborts when its event loop gets a turn.
      Atomics.store(new Int32Array(leading), 0, 1);
      port1.postMessage(null);
      deadline = setTimeout(() => terminate.abort(abortError('stop timeout')), this.#options.stopTimeout);
    };
    if (signal.aborted) onEnd();
    else signal.addEventListener('abort', onEnd, { once: true });
    const message: TaskMessage = { module: this.#options.module, token, fence, leading, port: port2 };
    try {
      const running = pool.run(message, { transferList: [port2] as never, signal: terminate.signal });
      this.#track(pool);
      // A thread that dies before it takes the task (out of its resourceLimits at start-up) never settles the run:
      // the pool's own error, during this run, fails it.
      const failed = new Promise<never>((_, reject) => pool.on('error', (onPoolError = reject)));
      await Promise.race([running, failed]);
    } catch (err) {
      // Terminated after the end of leadership: the run stopped; the singleton says why (an error event, not a failure).
      if (terminate.signal.aborted) throw new BellwetherError(ErrorCodes.TASK_TERMINATED, `its task did not settle within ${this.#options.stopTimeout} ms of the end of leadership: its thread was terminated`);
      throw err;
    } finally {
      clearTimeout(deadline);
      signal.removeEventListener('abort', onEnd);
      if (onPoolError) pool.off('error', onPoolError);
      port1.close();
      if (terminate.signal.aborted || !this.#options.keepThread) await this.endTerm();
    }
  }

  /**
   * The pool's own errors (a thread that fails outside a task) must not end the process: during a
   * run they fail it (above); between runs the pool is replaced at the next one.
   */
  #watched(pool: Piscina): Piscina {
    this.#poolFailed = false;
    pool.on('error', () => void (this.#poolFailed = true));
    return pool;
  }

  /** Ends the pool and waits until each of its threads has exited. */
  async endTerm(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    if (!pool) return;
    this.#track(pool);
    await pool.destroy();
    await Promise.all(this.#exits.values());
    this.#exits.clear();
  }

  /** Threads piscina terminates on an abort leave the pool at once, before they exit: their exits are taken beforehand. */
  #track(pool: Piscina): void {
    for (const thread of pool.threads) if (!this.#exits.has(thread)) this.#exits.set(thread, once(thread, 'exit').catch(() => {}));
  }
}
