import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ENV } from '../cluster/protocol.js';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { fsExtPath, nativeFlock, nativeFlockError, openNativeFlock } from './flock-native.js';

/**
 * Waiting for a flock(2) lock without holding a thread of this process.
 *
 * A blocking flock(2) must sleep in some thread. In this process that would
 * either occupy a libuv threadpool thread (fs-ext's async flock: four waiters
 * stall all fs, dns and crypto work) or a worker thread, which Node joins at
 * exit, so a waiting process could not exit until someone else released the
 * lock. Instead a child process blocks on a descriptor it inherits from us.
 * flock(2) locks belong to the open file description, which the child
 * shares: when the child's flock(2) returns and the child exits, the lock is
 * ours, held by our descriptor, and released when we close it or die.
 *
 * The child is util-linux's `flock(1)` where it is installed, under
 * `setpriv --pdeathsig KILL` (when present) so that the kernel kills it if
 * we die first and no orphan stays queued on the lock. Where it is not
 * (distroless and Alpine images), the child is our own runtime running
 * WAITER_SOURCE, which never outlives us either.
 *
 * A lock nobody holds is taken at once in this process, with no child at
 * all, when flock(2) can be called here (fs-ext on Node, bun:ffi on Bun).
 * Cancelling a wait is killing the child.
 */

/** How a wait is made: the child's command line, and the line it prints once it holds the lock. */
export interface WaitMethod {
  kind: 'flock(1)' | 'built-in';
  command: string;
  args: string[];
  /** Printed by the child the moment its flock(2) returns. */
  locked: string;
  /** The child's stdin: a pipe whose end tells the built-in waiter on Node that we are gone. */
  stdin: 'pipe' | 'ignore';
  env: NodeJS.ProcessEnv;
}

interface Programs {
  flock: string | undefined;
  setpriv: string | undefined;
}

let programs_: Programs | undefined;

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

/** The helper programs, looked up once: flock(1) may be missing (then the built-in waiter is used). */
function programs(): Programs {
  programs_ ??= { flock: findProgram('flock'), setpriv: findProgram('setpriv') };
  return programs_;
}

/**
 * The built-in waiter: the app's own runtime runs this source (`-e`, so
 * that nothing needs to be on disk beside a bundle or inside a compiled
 * executable) with the lock file as descriptor 3.
 */
const WAITER_SOURCE = `
const flock = (${openNativeFlock.toString()})(require, process.env.BW_WAITER_FS_EXT);
flock.dieWithParent(Number(process.env.BW_WAITER_PARENT));
const fs = require('fs');
flock.lock(3).then(
  () => { fs.writeSync(1, 'locked\\n'); process.exit(0); },
  (err) => { fs.writeSync(2, 'flock(2) failed: ' + err.message + '\\n'); process.exit(1); },
);
`;

/**
 * Variables that would make the built-in waiter something else: a cluster
 * worker, or a process with the app's preloads, inspector or options.
 */
const NOT_INHERITED = /^(NODE_OPTIONS|NODE_UNIQUE_ID|NODE_CHANNEL_FD|NODE_CHANNEL_SERIALIZATION_MODE|BUN_OPTIONS|BUN_INSPECT.*)$/;

/**
 * What the supervisor tells its worker alone (the ZooKeeper settings among
 * them): no helper gets it, also when the app spawns one before the worker
 * runtime has removed these from process.env.
 */
const WORKER_ONLY = new Set<string>([ENV.primaryPid, ENV.heartbeat, ENV.killTimeout, ENV.zkSettings, ENV.entry]);

/** The environment of a helper program: this process's, without what only the worker reads and what `also` matches. */
function helperEnv(also?: RegExp): Record<string, string> {
  const kept = Object.entries(process.env).filter(([name, value]) => value !== undefined && !WORKER_ONLY.has(name) && !also?.test(name));
  return Object.fromEntries(kept) as Record<string, string>;
}

/** Whether this is a Node single executable application, whose binary runs only the app. */
function isSingleExecutable(): boolean {
  try {
    return (createRequire(import.meta.url)('node:sea') as { isSea?: () => boolean }).isSea?.() ?? false;
  } catch {
    return false;
  }
}

let method: WaitMethod | undefined;

/**
 * How this process waits for locks: flock(1) where util-linux is
 * installed, else the built-in waiter. Throws BW_ERR_FLOCK_UNAVAILABLE when
 * neither can work.
 */
export function waitMethod(): WaitMethod {
  if (method) return method;
  const { flock, setpriv } = programs();
  if (flock) {
    const flockArgs = ['--verbose', '3'];
    const [command, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', flock, ...flockArgs]] : [flock, flockArgs];
    method = { kind: 'flock(1)', command, args, locked: 'getting lock took', stdin: 'ignore', env: helperEnv() };
    return method;
  }
  if (!nativeFlock()) {
    throw new BellwetherError(
      ErrorCodes.FLOCK_UNAVAILABLE,
      `no way to wait for a lock here: the flock(1) program (util-linux) is not in ${SYSTEM_DIRS.join(', ')}, and ${nativeFlockError()}; ` +
        'install util-linux, or let the optional dependency fs-ext build (it needs make, g++ and python3), or set BELLWETHER_FLOCK to the absolute path of flock(1)',
    );
  }
  if (isSingleExecutable()) {
    throw new BellwetherError(
      ErrorCodes.FLOCK_UNAVAILABLE,
      `no way to wait for a lock here: the flock(1) program (util-linux) is not in ${SYSTEM_DIRS.join(', ')}, and a single executable application cannot run the built-in waiter; install util-linux`,
    );
  }
  const onBun = Boolean(process.versions['bun']);
  const env = helperEnv(NOT_INHERITED);
  // A compiled Bun executable acts as plain bun with BUN_BE_BUN.
  Object.assign(env, { BW_WAITER_PARENT: String(process.pid), BW_WAITER_FS_EXT: fsExtPath(), ...(onBun ? { BUN_BE_BUN: '1' } : {}) });
  method = { kind: 'built-in', command: process.execPath, args: ['-e', WAITER_SOURCE], locked: 'locked', stdin: onBun ? 'ignore' : 'pipe', env };
  return method;
}

/**
 * Takes the lock on `fd` now if nobody holds it: the lock then belongs to
 * our open file description until we close it. Returns false when someone
 * holds it. In this process when flock(2) can be called here, else with
 * `flock -n` on our descriptor. Synchronous: it never waits for the lock.
 */
export function lockNowIfFree(fd: number): boolean {
  const how = waitMethod(); // a bad BELLWETHER_FLOCK, or no way to lock at all, is said here too
  const native = nativeFlock();
  if (native) return native.tryLock(fd);
  // No native flock(2) but a waitMethod(): flock(1), whose helper environment this is.
  const { status, error } = spawnSync(programs().flock as string, ['-n', '-E', '75', '3'], { stdio: ['ignore', 'ignore', 'ignore', fd], env: how.env });
  if (status === 75) return false;
  if (status !== 0) {
    throw new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `flock(1) could not take the lock (${error ? error.message : `status ${status}`})`, { cause: error });
  }
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

/** Takes the lock here if it is free and flock(2) can be called here. */
function tryHere(fd: number): boolean {
  try {
    return nativeFlock()?.tryLock(fd) ?? false;
  } catch {
    return false;
  }
}

/**
 * Checks, where flock(2) can be called here, that the lock the waiter
 * reported is held through `fd` (a lock held through our own open file
 * description is taken again at once; anyone else's refuses): a program
 * that only prints the line, or exits 0, takes nothing.
 */
function heldHere(fd: number, how: WaitMethod): BellwetherError | undefined {
  const native = nativeFlock();
  if (!native) return undefined;
  try {
    if (native.tryLock(fd)) return undefined;
    return new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `the ${how.kind} lock waiter said it had the lock, but another process holds it`);
  } catch (err) {
    return new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `flock(2) failed: ${(err as Error).message}`, { cause: err });
  }
}

/** A lock taken in this process: no helper to wait for. */
const NO_CHILD: FlockWaiter = { gone: () => Promise.resolve() };

/**
 * Resolves once `fd` holds an exclusive flock(2) lock. Rejects with
 * `signal.reason` when the signal aborts first; the lock is then not held,
 * and the helper is gone (so closing `fd` leaves nothing locked).
 *
 * `tryHereFirst`: take a free lock in this process, with no helper. Not for
 * a holder trying again after its term: at its release the kernel wakes
 * the queued waiters and takes them off the queue until they run, and a
 * try from here, microseconds later, would always win (seen: a holder
 * whose file was deleted led again while a newcomer had queued first).
 *
 * The waiter prints a line once its flock(2) returns (`flock --verbose`:
 * "getting lock took ..."; flock(1)'s stdout is a pipe, so the line is
 * written as it exits): reading it spares waiting for the exit to be
 * reported and reaped (measured in a takeover on Node: the 'exit' event
 * came about 6 ms after the line, behind the work the line starts).
 */
export function waitForExclusiveLock(fd: number, signal: AbortSignal, tryHereFirst: boolean): Promise<FlockWaiter> {
  if (signal.aborted) return Promise.reject(signal.reason);
  let how: WaitMethod;
  try {
    how = waitMethod();
    // A free lock needs no child: taken here when flock(2) can be called here.
    if (tryHereFirst && nativeFlock()?.tryLock(fd)) return Promise.resolve(NO_CHILD);
  } catch (err) {
    return Promise.reject(
      err instanceof BellwetherError ? err : new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `flock(2) failed: ${(err as Error).message}`, { cause: err }),
    );
  }
  return runWaiter(fd, signal, how);
}

/**
 * The helper waiting on `lock` (our lock file's descriptor, or 'pipe': a
 * socket of its own, which nobody else can lock, for the rehearsal).
 */
function runWaiter(lock: number | 'pipe', signal: AbortSignal, how: WaitMethod): Promise<FlockWaiter> {
  const { command, args, locked, stdin, env } = how;
  const fd = typeof lock === 'number' ? lock : undefined;
  return new Promise<FlockWaiter>((resolve, reject) => {
    const cannotRun = (err: Error): BellwetherError =>
      new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `could not run ${command}: ${err.message}`, { cause: err });
    let child: ChildProcess;
    try {
      // Its own process group: a Ctrl-C meant for the app must not kill the waiter
      // (its parent decides; it still ends if the parent dies).
      child = spawn(command, args, { stdio: [stdin, 'pipe', 'pipe', lock], detached: true, env, cwd: '/' });
    } catch (err) {
      reject(cannotRun(err as Error));
      return;
    }
    type Unrefable = { unref?: () => void };
    // No pipes when the spawn failed before making them (EMFILE, ENFILE):
    // its 'error' event, below, then says why.
    const stdout = child.stdout as (Readable & Unrefable) | null;
    const stderr = child.stderr as (Readable & Unrefable) | null;
    // While it waits, the waiter never keeps the process alive on its own
    // (the singleton's keepAlive option does that, for its whole life).
    child.unref();
    stdout?.unref?.();
    stderr?.unref?.();
    for (const stream of [child.stdin, child.stdio?.[3]] as (Unrefable | null | undefined)[]) stream?.unref?.();
    let errors = '';
    stderr?.setEncoding('utf8').on('data', (chunk: string) => void (errors = (errors + chunk).slice(-1000)));
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
      // The rehearsal's helper has nothing more to do: ended now, whatever
      // it is (BELLWETHER_FLOCK may name a program slow to exit).
      if (fd === undefined && !exited) child.kill('SIGKILL');
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
      // At the exit, not only at 'close': the pipes' end may still be unread
      // when nothing else keeps the process alive.
      void exit.then(() => settle(signal.reason));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      // An aborted wait ends at the exit, whatever the child printed.
      if (output.includes(locked) && !signal.aborted) {
        const error = fd === undefined ? undefined : heldHere(fd, how);
        if (error) child.kill('SIGKILL');
        settle(error);
      }
    });
    child.once('error', (err) => settle(cannotRun(err)));
    // 'close': after the last of its output was read. Without the line that
    // says it has the lock, an exit, even 0, is not the lock.
    child.once('close', () => {
      if (signal.aborted) return settle(signal.reason);
      const { exitCode: code, signalCode: exitSignal } = child;
      const why = `${exitSignal ? `signal ${exitSignal}` : `exit code ${code}`}${errors.trim() ? `: ${errors.trim()}` : ''}`;
      // A waiter that cannot work must not leave the job without a runner
      // while the lock is free: try here before saying so.
      if (fd !== undefined && tryHere(fd)) return settle();
      settle(new BellwetherError(ErrorCodes.FLOCK_UNAVAILABLE, `the ${how.kind} lock waiter ended without the lock (${why})`));
    });
  });
}

let rehearsed = false;

/** How long the rehearsal's helper may take: flock(1) returns at once on its socket. */
const REHEARSAL_MS = 1000;

/**
 * Once per process, before its first wait: a whole wait through flock(1),
 * on a socket of the helper's own (flock(2) locks any open file, and nobody
 * else can reach this one), which returns at once. It changes nothing: no
 * file, no lock anyone else sees. A takeover is otherwise the first time a
 * process runs this path, and code runs far slower the first time:
 * measured in a takeover on Node 20, flock(1)'s line reached its handler
 * 0.8-1.7 ms after flock(2) returned without a rehearsal. Not with the
 * built-in waiter, which is a whole runtime's start-up.
 */
export function rehearseWait(): void {
  if (rehearsed) return;
  rehearsed = true;
  let how: WaitMethod;
  try {
    how = waitMethod();
  } catch {
    return; // said by the wait itself
  }
  if (how.kind !== 'flock(1)') return;
  // Never awaited, never keeping the process alive (once spawned), and
  // ended after REHEARSAL_MS or at the process's exit at the latest (without
  // setpriv nothing else would end it): a rehearsal that cannot run (no
  // descriptors left, say) changes nothing either. In the next turn of the
  // loop: after the first wait's helper, if start() needs one, has been
  // spawned (the rehearsal must not take the descriptors it needs), and so
  // that start() does not wait for the spawn.
  setImmediate(() => {
    const stop = new AbortController();
    const end = (): void => stop.abort();
    const bound = setTimeout(end, REHEARSAL_MS);
    bound.unref();
    process.once('exit', end);
    const done = (): void => {
      clearTimeout(bound);
      process.off('exit', end);
    };
    runWaiter('pipe', stop.signal, how).then(done, done);
  });
}
