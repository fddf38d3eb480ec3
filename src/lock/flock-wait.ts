import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BellwetherError, ErrorCodes } from '../errors.js';

/**
 * Waiting for a flock(2) lock without holding a thread of this process.
 *
 * A blocking flock(2) must sleep in some thread. In this process that would
 * either occupy a libuv threadpool thread (fs-ext's async flock: four waiters
 * stall all fs, dns and crypto work) or a worker thread, which Node joins at
 * exit, so a waiting process could not exit until someone else released the
 * lock. Instead a `flock(1)` child blocks on a descriptor it inherits from
 * us. flock(2) locks belong to the open file description, which the child
 * shares: when the child's flock(2) returns and the child exits, the lock is
 * ours, held by our descriptor, and released when we close it or die.
 *
 * Cancelling is killing the child. `setpriv --pdeathsig KILL` (when present)
 * makes the kernel kill the child if we die first, so no orphan stays queued
 * on the lock.
 */

interface Programs {
  flock: string;
  setpriv: string | undefined;
}

let programs: Programs | undefined;

/**
 * Where the helpers are looked for: system directories only, never PATH.
 * `npm run` and `npx` put node_modules/.bin first on PATH, where any
 * dependency's bin can land: a fake `flock` there could report a lock it
 * never took. BELLWETHER_FLOCK and BELLWETHER_SETPRIV name other absolute
 * paths, checked the same way.
 */
const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];
const OVERRIDES = { flock: 'BELLWETHER_FLOCK', setpriv: 'BELLWETHER_SETPRIV' } as const;

/** A program we may run: an absolute path to a regular executable file owned by root or us, that nobody else can change. */
function trusted(file: string): string | undefined {
  try {
    const real = fs.realpathSync(file);
    const stat = fs.statSync(real);
    const uid = process.getuid?.();
    if (!stat.isFile() || (stat.mode & 0o022) !== 0 || (stat.mode & 0o111) === 0) return undefined;
    if (stat.uid !== 0 && stat.uid !== uid) return undefined;
    return real;
  } catch {
    return undefined;
  }
}

function findProgram(name: keyof typeof OVERRIDES): string | undefined {
  const override = process.env[OVERRIDES[name]];
  if (override) {
    const program = path.isAbsolute(override) ? trusted(override) : undefined;
    if (!program) {
      throw new BellwetherError(
        ErrorCodes.FLOCK_UNAVAILABLE,
        `${OVERRIDES[name]}=${override} is not an absolute path to an executable regular file owned by root or this user and writable by nobody else`,
      );
    }
    return program;
  }
  for (const dir of SYSTEM_DIRS) {
    const program = trusted(path.join(dir, name));
    if (program) return program;
  }
  return undefined;
}

/** Looks the helper programs up once; throws BW_ERR_FLOCK_UNAVAILABLE when flock(1) is missing. */
export function flockPrograms(): Programs {
  if (programs) return programs;
  const flock = findProgram('flock');
  if (!flock) {
    throw new BellwetherError(
      ErrorCodes.FLOCK_UNAVAILABLE,
      `the flock(1) program (util-linux) was not found in ${SYSTEM_DIRS.join(', ')}; install util-linux, or set BELLWETHER_FLOCK to its absolute path`,
    );
  }
  programs = { flock, setpriv: findProgram('setpriv') };
  return programs;
}

/**
 * Takes the lock on `fd` now if nobody holds it (flock -n on our
 * descriptor: the lock then belongs to our open file description until we
 * close it). Returns false when someone holds it; throws when flock(1)
 * cannot run. Synchronous: it never waits for the lock.
 */
export function lockNowIfFree(fd: number): boolean {
  const { flock } = flockPrograms();
  const status = spawnSync(flock, ['-n', '-E', '75', '3'], { stdio: ['ignore', 'ignore', 'ignore', fd] }).status;
  if (status === 75) return false;
  if (status !== 0) throw new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `flock(1) could not take the lock (status ${status})`);
  return true;
}

/** The waiting helper, once the lock is ours. */
export interface FlockWaiter {
  /**
   * Resolves once the helper process is gone, and with it its copy of the
   * descriptor: only then does closing ours release the lock at once.
   */
  gone(): Promise<void>;
}

/**
 * Resolves once `fd` holds an exclusive flock(2) lock. Rejects with
 * `signal.reason` when the signal aborts first; the lock is then not held,
 * and the helper is gone (so closing `fd` leaves nothing locked).
 *
 * `flock --verbose` prints "getting lock took ..." the moment flock(2)
 * returns: reading that line is faster than waiting for the child to exit
 * and be reaped.
 */
export function waitForExclusiveLock(fd: number, signal: AbortSignal): Promise<FlockWaiter> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const { flock, setpriv } = flockPrograms();
  const flockArgs = ['--verbose', '3'];
  const [command, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', flock, ...flockArgs]] : [flock, flockArgs];
  return new Promise<FlockWaiter>((resolve, reject) => {
    // Its own process group: a Ctrl-C meant for the app must not kill the waiter
    // (its parent decides; --pdeathsig still ends it if the parent dies).
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore', fd], detached: true });
    const stdout = child.stdout as Readable & { unref?: () => void };
    // While it waits, the waiter never keeps the process alive on its own
    // (the singleton's keepAlive option does that, for its whole life).
    child.unref();
    stdout.unref?.();
    let exited = false;
    const exit = new Promise<void>((resolveExit) =>
      child.once('exit', () => {
        exited = true;
        resolveExit();
      }),
    );
    const waiter: FlockWaiter = {
      gone: () => {
        if (exited) return Promise.resolve();
        // Ref'd from here on: whoever awaits this must see it settle. The
        // child exits right after flock(2) returned, or was killed: bounded.
        child.ref();
        return exit;
      },
    };
    let settled = false;
    let output = '';
    const settle = (error?: unknown): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (error === undefined) resolve(waiter);
      else reject(error);
    };
    // Settled at the child's exit, not before: had it taken the lock just
    // now, its copy of the descriptor would keep the lock held after the
    // caller closed its own. Ref'd, so that the exit is seen even when
    // nothing else keeps the process alive (close() must settle).
    const onAbort = (): void => {
      child.kill('SIGKILL');
      child.ref();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    stdout.setEncoding('utf8');
    stdout.on('data', (chunk: string) => {
      output += chunk;
      // An aborted wait ends at the exit, whatever the child printed.
      if (output.includes('getting lock took') && !signal.aborted) settle();
    });
    child.once('error', (err) => {
      settle(new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `could not run ${command}: ${err.message}`, { cause: err }));
    });
    void exit.then(() => {
      const { exitCode: code, signalCode: exitSignal } = child;
      if (signal.aborted) settle(signal.reason);
      // flock(1) exits 0 only once the lock is taken.
      else if (code === 0) settle();
      else {
        settle(
          new BellwetherError(
            ErrorCodes.FLOCK_UNAVAILABLE,
            `flock(1) waiting for the lock ended without it (${exitSignal ? `signal ${exitSignal}` : `exit code ${code}`})`,
          ),
        );
      }
    });
  });
}
