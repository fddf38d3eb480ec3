import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ResourceLimits } from 'node:worker_threads';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { type Logger, NO_LOG, checkLogger } from '../log/logger.js';
import { ZkSession } from '../zk/session.js';
import { checkPath } from '../zk/paths.js';
import { type Acl, checkElectionAcl } from '../zk/acl.js';
import { worker } from '../worker/worker.js';
import { ClusterLease, HostClusterLease } from './cluster-lease.js';
import { PrimaryBallotLease } from './primary-lease.js';
import { DEFAULT_ELECTION_ROOT } from '../election/ballots.js';
import { primaryHoldsFleetBallots } from '../worker/fleet-channel.js';
import { defaultLockDir } from '../lock/lock-dir.js';
import { HostLock } from '../lock/host-lock.js';
import { checkFunction, checkKnownKeys, checkMillis, checkName, checkObject, invalidOption } from '../validate.js';
import { type Backoff, type Job, type RunContext, Singleton } from './singleton.js';
import { TaskRunner } from './task.js';

export interface HostSingletonOptions {
  /** `[A-Za-z0-9._-]{1,128}`: the lock file is `<lockDir>/<name>.lock`. */
  name: string;
  /** `'host'` (the default): one runner per host, with flock(2). */
  scope?: 'host';
  /**
   * Directory of the lock files. Default: `$BELLWETHER_LOCK_DIR`, else
   * `/tmp/bellwether-<uid>` (created 0700, never a symlink). An explicit
   * directory must exist, be owned by this user and not be writable by
   * others unless sticky; a symlink to it is resolved once, at start().
   */
  lockDir?: string;
  /** The job. Runs only in the holder, on its main thread; must stop when `signal` aborts. */
  run?: (context: RunContext) => unknown;
  /**
   * Instead of `run`: a module (a file: URL, or an absolute path) whose
   * default export runs in a worker thread, with `{ token, signal,
   * stillLeader }` (see `TaskContext`). For CPU-heavy jobs: the event loop
   * (requests, heartbeats, the ZooKeeper session) stays free, and a task
   * that does not stop is terminated `stopTimeout` ms after leadership ends.
   */
  task?: URL | string;
  /**
   * Run (`run` or `task`) again every this many ms while leader, counted
   * from the previous run's start (at once if it took longer): runs never
   * overlap, and runs missed while not leader are not made up. Default:
   * once per term.
   */
  every?: number;
  /** With `task`: ms the task gets to settle after leadership ends, before its thread is terminated. Default 1000. */
  stopTimeout?: number;
  /** With `task`: limits of its worker thread (heap sizes, stack, MiB; maxOldGenerationSizeMb at least 4, stackSizeMb at least 1); a task that exceeds them fails. */
  resourceLimits?: ResourceLimits;
  /**
   * Whether the singleton keeps the process alive from `start()` until
   * `close()`: while it waits, while it leads (also after `run` resolved),
   * and while it backs off after a failure. Default `false`: in a server the
   * server does that, and the process's lifetime is the app's business. A
   * process whose only work is this job sets `true`.
   */
  keepAlive?: boolean;
  /** Delay before contending again after `run` failed. Default `{ initial: 100, max: 10000 }`. */
  backoff?: Partial<Backoff>;
  /**
   * Logs `elected` and `demoted` (with its reason), and errors that have no
   * `error` listener, each with `{ singleton: name, scope }`; with a fleet
   * election, also its Candidate's `step-down`. Default: none.
   */
  logger?: Logger;
}

export interface ClusterSingletonOptions extends Omit<HostSingletonOptions, 'scope' | 'lockDir'> {
  /** `'cluster'`: one runner in the fleet, by a ZooKeeper election. */
  scope: 'cluster';
  /** The session the election runs in (yours: start it, close it). */
  zk: ZkSession;
  /** Data of this process's ballot and, when it leads, of the leader_ack. */
  data?: Buffer | string;
  /** Parent of the election directories. Default `/_zkelection`. */
  root?: string;
  /** Step down after this many ms without a server answer. Default: half the session timeout. */
  stepDownAfter?: number;
  /**
   * ACL of the election's nodes (its parents, the ballots, leader_ack), as
   * Candidate's `acl`. Default: `'creator-read-all'` when the session has
   * `auth`, else `'open'`; under a Supervisor's fleet ballot, by the
   * primary's session. It must let that session's identity read, create
   * and delete (r, c, d): `'read-only'` is refused.
   */
  acl?: Acl;
}

export interface HostClusterSingletonOptions extends Omit<ClusterSingletonOptions, 'scope' | 'zk'> {
  /**
   * `'host+cluster'`: the host lock picks one worker; it runs while the host
   * leads the fleet election.
   */
  scope: 'host+cluster';
  /**
   * The session the election runs in: the lock holder stands in the election
   * itself. Leave it out in a worker of a Supervisor with `zk`: the primary
   * then stands in the election for the host, and a worker that dies hands
   * the job to a sibling in milliseconds, in the same fleet term.
   */
  zk?: ZkSession;
  lockDir?: string;
}

export type SingletonOptions = HostSingletonOptions | ClusterSingletonOptions | HostClusterSingletonOptions;

const KNOWN = ['name', 'scope', 'lockDir', 'run', 'task', 'every', 'stopTimeout', 'resourceLimits', 'backoff', 'keepAlive', 'logger', 'zk', 'data', 'root', 'stepDownAfter', 'acl'] as const;
const RESOURCE_LIMITS = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const;
const HOST_ONLY = ['lockDir'];
const CLUSTER_ONLY = ['zk', 'data', 'root', 'stepDownAfter', 'acl'];

/** Declares a job that runs in exactly one process; call `start()` to contend. */
export function singleton(options: SingletonOptions): Singleton {
  const given = checkObject(options, 'singleton options');
  checkKnownKeys(given, KNOWN, 'singleton()');
  const name = checkName(given['name'], 'singleton name');
  const scope = given['scope'] ?? 'host';
  if (scope !== 'host' && scope !== 'cluster' && scope !== 'host+cluster') throw invalidOption('scope', "'host', 'cluster' or 'host+cluster'", scope);
  for (const key of scope === 'host' ? CLUSTER_ONLY : scope === 'cluster' ? HOST_ONLY : []) {
    if (given[key] !== undefined) throw invalidOption(key, `unset with scope '${scope}'`, given[key]);
  }
  const job = checkJob(given);
  const backoffGiven = given['backoff'] === undefined ? {} : checkObject(given['backoff'], 'backoff');
  checkKnownKeys(backoffGiven, ['initial', 'max'], 'singleton() backoff');
  const initial = checkMillis(backoffGiven['initial'], 'backoff.initial', 100, 1);
  const max = checkMillis(backoffGiven['max'], 'backoff.max', Math.max(10_000, initial), initial);
  const keepAlive = given['keepAlive'] ?? false;
  if (typeof keepAlive !== 'boolean') throw invalidOption('keepAlive', 'a boolean', keepAlive);
  const every = given['every'] === undefined ? undefined : checkMillis(given['every'], 'every', 0, 1);
  if (every !== undefined && !job) throw invalidOption('every', 'unset without run or task', every);
  const policy = { backoff: { initial, max }, keepAlive, ...(every === undefined ? {} : { every }) };
  const logging = { scope, logger: checkLogger(given['logger']) };
  const host = scope === 'cluster' ? undefined : hostLock(name, given);
  if (scope === 'host') return new Singleton(name, host!, job, policy, logging);

  const zk = given['zk'];
  const data = given['data'];
  if (data !== undefined && typeof data !== 'string' && !Buffer.isBuffer(data)) throw invalidOption('data', 'a string or a Buffer', data);
  const root = given['root'] === undefined ? undefined : checkPath(given['root'], 'root');
  const stepDownAfter = given['stepDownAfter'] === undefined ? undefined : checkMillis(given['stepDownAfter'], 'stepDownAfter', 0, 1);
  // In a worker of a Supervisor with zk, the primary holds the host's ballot: the worker needs no session.
  if (zk === undefined && host && primaryHoldsFleetBallots()) {
    // The primary's session stands in the election: the acl is checked against its credentials.
    const acl = given['acl'] === undefined ? undefined : checkElectionAcl(given['acl'], worker.zkSettings()?.auth ?? []);
    const election = { name, root: root ?? DEFAULT_ELECTION_ROOT, data: Buffer.from(data ?? ''), ...(stepDownAfter ? { stepDownAfter } : {}), ...(acl ? { acl } : {}) };
    return new Singleton(name, new PrimaryBallotLease(host, election), job, policy, logging);
  }
  if (!(zk instanceof ZkSession)) throw invalidOption('zk', scope === 'host+cluster' ? 'a ZkSession (or none, in a worker of a Supervisor with zk)' : 'a ZkSession', zk);
  const acl = given['acl'] === undefined ? undefined : checkElectionAcl(given['acl'], zk.settings().auth);
  // Errors of the election reach the singleton's listeners; its Candidate logs where the singleton does.
  let elected: Singleton | undefined;
  const cluster = new ClusterLease(
    zk,
    name,
    { ...(data === undefined ? {} : { data }), ...(root ? { root } : {}), ...(stepDownAfter ? { stepDownAfter } : {}), ...(acl ? { acl } : {}) },
    (error) => elected?.report(error),
    () => elected?.log ?? NO_LOG,
  );
  elected = new Singleton(name, host ? new HostClusterLease(host, cluster) : cluster, job, policy, logging);
  return elected;
}

function hostLock(name: string, given: Record<string, unknown>): HostLock {
  const lockDir = given['lockDir'];
  if (lockDir !== undefined && (typeof lockDir !== 'string' || lockDir === '' || lockDir.includes('\0'))) {
    throw invalidOption('lockDir', 'a non-empty path', lockDir);
  }
  return new HostLock(name, (lockDir as string | undefined) ?? defaultLockDir(), lockDir === undefined);
}

/** `run` on the main thread, or `task` in a worker thread (with its stopTimeout and resourceLimits); neither is fine (a singleton that only leads). */
function checkJob(given: Record<string, unknown>): Job | undefined {
  const task = given['task'];
  if (task === undefined) {
    for (const key of ['stopTimeout', 'resourceLimits']) if (given[key] !== undefined) throw invalidOption(key, 'unset without task', given[key]);
    return given['run'] === undefined ? undefined : { run: checkFunction<(context: RunContext) => unknown>(given['run'], 'run') };
  }
  if (given['run'] !== undefined) throw invalidOption('run', 'unset with task (the task is the job)', given['run']);
  let file: string;
  try {
    file = task instanceof URL || (typeof task === 'string' && task.startsWith('file:')) ? fileURLToPath(task) : String(task);
  } catch {
    throw invalidOption('task', 'a file: URL or an absolute path', String(task));
  }
  if ((typeof task !== 'string' && !(task instanceof URL)) || !path.isAbsolute(file)) throw invalidOption('task', 'a file: URL or an absolute path', String(task));
  let isFile = false;
  try {
    isFile = fs.statSync(file, { throwIfNoEntry: false })?.isFile() ?? false;
  } catch {
    // not a path the system takes (a NUL byte): not a module file either
  }
  if (!isFile) throw invalidOption('task', 'an existing module file', file);
  const stopTimeout = checkMillis(given['stopTimeout'], 'stopTimeout', 1000, 0);
  const limits = given['resourceLimits'] === undefined ? undefined : checkObject(given['resourceLimits'], 'resourceLimits');
  if (limits) {
    checkKnownKeys(limits, RESOURCE_LIMITS, 'singleton() resourceLimits');
    for (const key of RESOURCE_LIMITS) {
      const value = limits[key];
      if (value !== undefined && (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value))) throw invalidOption(`resourceLimits.${key}`, 'a positive number of MiB', value);
    }
    // Measured on Node 20, 22 and 24: a thread with a stack of 0.2 MiB fails in its bootstrap, which ends the whole process.
    const stack = limits['stackSizeMb'];
    if (typeof stack === 'number' && stack < 1) throw invalidOption('resourceLimits.stackSizeMb', 'at least 1 (MiB)', stack);
    // Measured: on Node 22 and 24 an old generation below about 2.5 MiB is a fatal V8 out-of-memory while the
    // thread's isolate is created, which ends the whole process (Node 20 reports it as the thread's error).
    // Below 4 MiB no piscina thread (what runs a task) started on any of them, so nothing that works is refused.
    const heap = limits['maxOldGenerationSizeMb'];
    if (typeof heap === 'number' && heap < 4) throw invalidOption('resourceLimits.maxOldGenerationSizeMb', 'at least 4 (MiB)', heap);
  }
  // Measured: Bun 1.4 accepts resourceLimits and does not enforce them (a task grew without bound).
  if (limits && process.versions['bun']) {
    process.emitWarning(new BellwetherError(ErrorCodes.UNSUPPORTED, `singleton ${String(given['name'])}: resourceLimits are not enforced under Bun; stopTimeout still ends the task's thread`));
  }
  return new TaskRunner({
    module: pathToFileURL(file).href,
    stopTimeout,
    keepThread: given['every'] !== undefined,
    ...(limits ? { resourceLimits: limits as ResourceLimits } : {}),
  });
}
