import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { type Logger, NO_LOG, checkLogger } from '../log/logger.js';
import { checkFunction, checkKnownKeys, checkMillis, checkName, checkObject, invalidOption } from '../validate.js';
import { ZkSession } from '../zk/session.js';
import { controlSocketPath } from './control-socket.js';
import type { SlotInfo } from './slot.js';

export interface RestartPolicy {
  /** First delay before re-forking a slot whose worker exited, in ms (doubling). Default 100. */
  initialDelay: number;
  /** Longest delay, in ms. Default 30000. */
  maxDelay: number;
  /** A slot whose worker exits more than this often within `window` is given up. Default 5. */
  maxRestarts: number;
  /** The crash-loop window, in ms. Default 60000. */
  window: number;
}

export interface SupervisorOptions {
  /** The workers' entry script (your server). */
  exec: string;
  /** Arguments for the entry script. */
  args?: string[];
  /** Number of workers. Default: the number of CPUs. */
  workers?: number;
  /** Name of this supervisor, for its control socket (`bellwether status --name`). Default `'default'`. */
  name?: string;
  /** A worker silent (no heartbeat) for longer than this is killed and replaced, ms. Default 30000. */
  timeout?: number;
  /** Heartbeat interval of the workers, ms; must be below `timeout`. Default 1000. */
  heartbeat?: number;
  /** SIGTERM, then SIGKILL after this, for a worker being killed (silent, unhealthy), ms. Default 5000. */
  killTimeout?: number;
  /** Graceful stop: SIGKILL workers still running after this, ms. Default 30000. */
  shutdownTimeout?: number;
  /** A worker not ready (no `ready()` and no `listening`) after this is replaced, ms. Default 60000. */
  bootTimeout?: number;
  restart?: Partial<RestartPolicy>;
  /** Extra environment for the workers. */
  env?: Record<string, string>;
  /** Sessions paused around each fork; the first one's settings are passed to the workers. */
  zk?: ZkSession | ZkSession[];
  /** Handle SIGTERM, SIGINT, SIGHUP, SIGTTIN and SIGTTOU in this process. Default true. */
  signals?: boolean;
  /**
   * Stop (gracefully) when the process that started this primary is gone, as
   * workers do when their primary is gone. For a primary started by a test,
   * a script or another supervisor, which would otherwise keep serving with
   * nobody left to stop it. Checked every 250 ms. Default false (a daemon's
   * parent may legitimately go away). `true` takes the parent's pid when the
   * Supervisor is constructed; a number names it (a launcher that knows it,
   * or a CLI that read `process.ppid` as it loaded), so a parent that died
   * even earlier is noticed too.
   */
  stopWithParent?: boolean | number;
  /** Path of the control socket (mode 0600), or `false` for none. Default: in the lock directory. */
  controlSocket?: string | false;
  /**
   * Logs the workers' exits, restarts, kills and crash loops (worker lines
   * with `{ worker: index, pid }`), rolling restarts, the host's fleet
   * ballots (with `zk`), and errors that have no `error` listener. In this
   * process only: workers log with loggers of their own. Default: none.
   */
  logger?: Logger;
  beforeFork?: (slot: SlotInfo) => unknown;
  afterFork?: (slot: SlotInfo) => unknown;
  afterWorkerExit?: (slot: SlotInfo, exit: { code: number | null; signal: string | null }) => unknown;
}

export interface ResolvedSupervisorOptions extends Required<Omit<SupervisorOptions, 'zk' | 'controlSocket' | 'restart' | 'beforeFork' | 'afterFork' | 'afterWorkerExit'>> {
  restart: RestartPolicy;
  zk: ZkSession[];
  controlSocket: string | false | undefined;
  beforeFork: SupervisorOptions['beforeFork'];
  afterFork: SupervisorOptions['afterFork'];
  afterWorkerExit: SupervisorOptions['afterWorkerExit'];
}

const KNOWN = [
  'exec', 'args', 'workers', 'name', 'timeout', 'heartbeat', 'killTimeout', 'shutdownTimeout', 'bootTimeout',
  'restart', 'env', 'zk', 'signals', 'stopWithParent', 'controlSocket', 'logger', 'beforeFork', 'afterFork', 'afterWorkerExit',
] as const;

export const MAX_WORKERS = 1024;

/** Every check that can be made before anything forks. */
export function resolveSupervisorOptions(options: SupervisorOptions): ResolvedSupervisorOptions {
  const given = checkObject(options, 'Supervisor options');
  checkKnownKeys(given, KNOWN, 'Supervisor');
  const exec = given['exec'];
  if (typeof exec !== 'string' || exec === '') throw invalidOption('exec', 'the path of the entry script', exec);
  const entry = path.resolve(exec);
  let isFile = false;
  try {
    isFile = fs.statSync(entry).isFile();
  } catch {
    // reported below
  }
  if (!isFile) throw new BellwetherError(ErrorCodes.ENTRY_NOT_FOUND, `entry script ${entry} does not exist or is not a file`);
  const args = given['args'] ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw invalidOption('args', 'an array of strings', args);
  const workers = given['workers'] ?? Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  if (typeof workers !== 'number' || !Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
    throw invalidOption('workers', `an integer from 1 to ${MAX_WORKERS}`, workers);
  }
  const timeout = checkMillis(given['timeout'], 'timeout', 30_000, 1);
  const heartbeat = checkMillis(given['heartbeat'], 'heartbeat', Math.min(1000, Math.floor(timeout / 3)), 1);
  if (heartbeat >= timeout) {
    throw new BellwetherError(ErrorCodes.INVALID_OPTION, `heartbeat (${heartbeat} ms) must be below timeout (${timeout} ms): a healthy worker would be killed`);
  }
  const restartGiven = given['restart'] === undefined ? {} : checkObject(given['restart'], 'restart');
  checkKnownKeys(restartGiven, ['initialDelay', 'maxDelay', 'maxRestarts', 'window'], 'Supervisor restart');
  const initialDelay = checkMillis(restartGiven['initialDelay'], 'restart.initialDelay', 100, 0);
  const env = given['env'] ?? {};
  const envObject = checkObject(env, 'env');
  for (const [key, value] of Object.entries(envObject)) {
    // A NUL would make every fork throw.
    if (typeof value !== 'string' || value.includes('\0') || key.includes('\0') || key.includes('=')) throw invalidOption(`env.${key}`, 'a string without NUL (and a name without = or NUL)', value);
  }
  const zkGiven = given['zk'] === undefined ? [] : Array.isArray(given['zk']) ? given['zk'] : [given['zk']];
  for (const zk of zkGiven) if (!(zk instanceof ZkSession)) throw invalidOption('zk', 'a ZkSession or an array of them', zk);
  const controlSocket = given['controlSocket'];
  if (controlSocket !== undefined && controlSocket !== false && (typeof controlSocket !== 'string' || controlSocket === '')) {
    throw invalidOption('controlSocket', 'a path or false', controlSocket);
  }
  const name = checkName(given['name'] ?? 'default', 'supervisor name');
  // The socket path's length is known now: a path too long for a Unix socket fails before anything starts.
  if (controlSocket !== false) controlSocketPath(name, controlSocket as string | undefined);
  const signals = given['signals'] ?? true;
  if (typeof signals !== 'boolean') throw invalidOption('signals', 'a boolean', signals);
  const stopWithParent = given['stopWithParent'] ?? false;
  if (typeof stopWithParent !== 'boolean' && !(Number.isInteger(stopWithParent) && (stopWithParent as number) > 0)) {
    throw invalidOption('stopWithParent', "a boolean or the parent's pid", stopWithParent);
  }
  const hook = (key: 'beforeFork' | 'afterFork' | 'afterWorkerExit') =>
    given[key] === undefined ? undefined : checkFunction<never>(given[key], key);
  return {
    exec: entry,
    args: args as string[],
    workers,
    name,
    timeout,
    heartbeat,
    killTimeout: checkMillis(given['killTimeout'], 'killTimeout', 5000, 0),
    shutdownTimeout: checkMillis(given['shutdownTimeout'], 'shutdownTimeout', 30_000, 0),
    bootTimeout: checkMillis(given['bootTimeout'], 'bootTimeout', 60_000, 1),
    restart: {
      initialDelay,
      maxDelay: checkMillis(restartGiven['maxDelay'], 'restart.maxDelay', Math.max(30_000, initialDelay), initialDelay),
      maxRestarts: checkMillis(restartGiven['maxRestarts'], 'restart.maxRestarts', 5, 1, 10_000, 'restarts'),
      window: checkMillis(restartGiven['window'], 'restart.window', 60_000, 1),
    },
    env: envObject as Record<string, string>,
    zk: zkGiven as ZkSession[],
    signals,
    stopWithParent: stopWithParent as boolean | number,
    controlSocket: controlSocket as string | false | undefined,
    logger: checkLogger(given['logger']) ?? NO_LOG,
    beforeFork: hook('beforeFork'),
    afterFork: hook('afterFork'),
    afterWorkerExit: hook('afterWorkerExit'),
  };
}
