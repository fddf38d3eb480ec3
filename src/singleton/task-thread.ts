/**
 * What a task's worker thread runs (piscina's `filename`): loads the task
 * module and calls its default export with the term's token, a signal that
 * aborts when leadership ends, and `stillLeader()` for loops that never
 * yield to the event loop.
 */
import type { MessagePort } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { abortError } from './abort.js';

/** What the task module's default export gets. */
export interface TaskContext {
  /** Fencing token of this term (the singleton's `token`). */
  token: number;
  /** Fence of this term (the singleton's `fence`). */
  fence: bigint;
  /** Aborts in this thread when leadership is lost or the singleton closes. */
  signal: AbortSignal;
  /**
   * False from the moment leadership ends: a shared-memory read, no message
   * round trip, for tight loops that never give the event loop a turn.
   */
  stillLeader(): boolean;
}

/** @internal What the main thread sends for one run. */
export interface TaskMessage {
  module: string;
  token: number;
  fence: bigint;
  /** Int32 [0]: 0 while leader, 1 once leadership has ended. */
  leading: SharedArrayBuffer;
  /** One message on it: leadership has ended. */
  port: MessagePort;
}

export default async function runTask({ module, token, fence, leading, port }: TaskMessage): Promise<undefined> {
  const flag = new Int32Array(leading);
  const stillLeader = (): boolean => Atomics.load(flag, 0) === 0;
  const controller = new AbortController();
  const stop = (): void => controller.abort(abortError('leadership ended'));
  port.once('message', stop);
  if (!stillLeader()) stop();
  try {
    const loaded = (await import(module.startsWith('file:') ? module : pathToFileURL(module).href)) as { default?: unknown };
    if (typeof loaded.default !== 'function') {
      throw new TypeError(`task module ${module} has no default export function (export default async function ({ token, signal, stillLeader }) { ... })`);
    }
    await (loaded.default as (context: TaskContext) => unknown)({ token, fence, signal: controller.signal, stillLeader });
    // Nothing is sent back: a result that cannot be cloned must not fail a run that succeeded.
    return undefined;
  } catch (err) {
    // Stopped the usual way once leadership ended (its signal's reason, or an API it was given the signal to):
    // no failure. Decided here: the AbortError's name does not survive the way back.
    if (controller.signal.aborted && (err === controller.signal.reason || (err as Error | null)?.name === 'AbortError')) return undefined;
    throw cloneable(err);
  } finally {
    port.close();
  }
}

/** What was thrown, as an Error that survives the structured clone back (a function, or an object with methods, would not). */
function cloneable(err: unknown): unknown {
  try {
    structuredClone(err);
    return err;
  } catch {
    const message = (err as { message?: unknown } | null)?.message;
    const error = new Error(typeof message === 'string' ? message : String(err));
    if (err instanceof Error) {
      error.name = err.name;
      error.stack = err.stack ?? error.stack;
    }
    return error;
  }
}
