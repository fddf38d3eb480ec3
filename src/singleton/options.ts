import { BellwetherError, ErrorCodes } from '../errors.js';
import { defaultLockDir } from '../lock/lock-dir.js';
import { HostLock } from '../lock/host-lock.js';
import { checkFunction, checkKnownKeys, checkMillis, checkName, checkObject, invalidOption } from '../validate.js';
import { type Backoff, type RunContext, Singleton } from './singleton.js';

export interface HostSingletonOptions {
  /** `[A-Za-z0-9._-]{1,128}`: the lock file is `<lockDir>/<name>.lock`. */
  name: string;
  /** `'host'` (the default): one runner per host, with flock(2). */
  scope?: 'host';
  /**
   * Directory of the lock files. Default: `$XDG_RUNTIME_DIR/bellwether`, else
   * `<os.tmpdir()>/bellwether-<uid>` (created 0700). An explicit directory
   * must exist, be owned by this user and not be writable by others unless sticky.
   */
  lockDir?: string;
  /** The job. Runs only in the holder; must stop when `signal` aborts. */
  run?: (context: RunContext) => unknown;
  /**
   * Whether waiting for leadership keeps the process alive. Default `false`:
   * in a server the server does that; a process whose only work is this job
   * sets `true` so that it does not exit before it is elected.
   */
  keepAlive?: boolean;
  /** Delay before contending again after `run` failed. Default `{ initial: 100, max: 10000 }`. */
  backoff?: Partial<Backoff>;
}

export type SingletonOptions = HostSingletonOptions;

const KNOWN = ['name', 'scope', 'lockDir', 'run', 'backoff', 'keepAlive'] as const;

/** Declares a job that runs in exactly one process; call `start()` to contend. */
export function singleton(options: SingletonOptions): Singleton {
  const given = checkObject(options, 'singleton options');
  checkKnownKeys(given, KNOWN, 'singleton()');
  const name = checkName(given['name'], 'singleton name');
  const scope = given['scope'] ?? 'host';
  if (scope === 'cluster' || scope === 'host+cluster') {
    throw new BellwetherError(ErrorCodes.UNSUPPORTED, `singleton scope ${JSON.stringify(scope)} is not available yet; use 'host'`);
  }
  if (scope !== 'host') throw invalidOption('scope', "'host'", scope);
  const run = given['run'] === undefined ? undefined : checkFunction<(context: RunContext) => unknown>(given['run'], 'run');
  const lockDir = given['lockDir'];
  if (lockDir !== undefined && (typeof lockDir !== 'string' || lockDir === '' || lockDir.includes('\0'))) {
    throw invalidOption('lockDir', 'a non-empty path', lockDir);
  }
  const backoffGiven = given['backoff'] === undefined ? {} : checkObject(given['backoff'], 'backoff');
  checkKnownKeys(backoffGiven, ['initial', 'max'], 'singleton() backoff');
  const initial = checkMillis(backoffGiven['initial'], 'backoff.initial', 100, 1);
  const max = checkMillis(backoffGiven['max'], 'backoff.max', Math.max(10_000, initial), initial);
  const keepAlive = given['keepAlive'] ?? false;
  if (typeof keepAlive !== 'boolean') throw invalidOption('keepAlive', 'a boolean', keepAlive);
  const source = new HostLock(name, lockDir ?? defaultLockDir(), lockDir === undefined, keepAlive);
  return new Singleton(name, source, run, { initial, max });
}
