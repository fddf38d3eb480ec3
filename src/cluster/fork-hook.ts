import cluster, { type Worker } from 'node:cluster';
import { callbackFailed } from '../errors.js';
import type { ZkSession } from '../zk/session.js';
import { answerZkAuth, zkSettingsEnv } from './zk-credentials.js';

export interface ForkHookOptions {
  /** Runs right before each `cluster.fork()`. */
  beforeFork?: () => void;
  /** Runs right after each `cluster.fork()`, with the new worker. */
  afterFork?: (worker: Worker) => void;
  /** Sessions paused around each fork; the first one's settings are passed to the worker in its environment, its credentials over IPC when the worker's session asks. */
  zk?: ZkSession | ZkSession[];
}

/**
 * Wraps `cluster.fork` so that a hand-written primary (or throng) gets the
 * fork hooks and ZooKeeper pausing without the Supervisor. `cluster.fork` is
 * synchronous, so the hooks are too: an async hook is not awaited. Returns
 * a function that removes the wrapper.
 */
export function installForkHook(options: ForkHookOptions = {}): () => void {
  const original = cluster.fork;
  const sessions = options.zk === undefined ? [] : Array.isArray(options.zk) ? options.zk : [options.zk];
  const guarded = (what: string, run: () => void): void => {
    try {
      run();
    } catch (err) {
      process.emitWarning(callbackFailed(`${what} fork hook`, err));
    }
  };
  const wrapped = function fork(env?: NodeJS.ProcessEnv): Worker {
    guarded('beforeFork', () => options.beforeFork?.());
    const [first] = sessions;
    const withSettings = first ? { ...env, ...zkSettingsEnv(first) } : env;
    for (const zk of sessions) zk.pause();
    let worker: Worker;
    try {
      worker = original.call(cluster, withSettings);
    } finally {
      for (const zk of sessions) zk.resume();
    }
    if (first) answerZkAuth(worker, first);
    guarded('afterFork', () => options.afterFork?.(worker));
    return worker;
  };
  cluster.fork = wrapped;
  return () => {
    if (cluster.fork === wrapped) cluster.fork = original;
  };
}
