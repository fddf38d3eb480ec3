import { createRequire } from 'node:module';

/**
 * flock(2) called from JavaScript. On Node it comes from fs-ext (an
 * optional dependency with a native build); on Bun from libc through
 * bun:ffi, because native addons that use libuv are not safe there.
 *
 * In the app's process only the non-blocking form is used (a blocking call
 * would stall the event loop or hold a threadpool thread, see
 * flock-wait.ts); the blocking one is for the built-in waiter process.
 */
export interface NativeFlock {
  /** Which library gives flock(2): named in messages. */
  readonly via: 'fs-ext' | 'bun:ffi';
  /** LOCK_EX | LOCK_NB on `fd`: true when taken (or already held through `fd`), false when someone else holds it; throws on any other error. */
  tryLock(fd: number): boolean;
  /**
   * LOCK_EX on `fd`, waiting: only in the waiter process, which does nothing
   * else (on Node it holds a threadpool thread, on Bun it blocks the thread).
   */
  lock(fd: number): Promise<void>;
  /**
   * Makes this process die when `parent` does: prctl PR_SET_PDEATHSIG on
   * Bun; on Node, which cannot call prctl, a kill of its own when its stdin
   * (a pipe from the parent) ends. Only in the waiter process.
   */
  dieWithParent(parent: number): void;
}

type Require = (id: string) => unknown;

/**
 * Opens flock(2) for this runtime. Self-contained: its source is also run by
 * the waiter process (`node -e` / `bun -e`, see flock-wait.ts), so it uses
 * nothing but its arguments and globals. `fsExt` is fs-ext's resolved path.
 */
export function openNativeFlock(require: Require, fsExt: string): NativeFlock {
  const LOCK_EX = 2;
  const LOCK_NB = 4;
  const EINTR = 4;
  const EAGAIN = 11;
  const PR_SET_PDEATHSIG = 1;
  const SIGKILL = 9;
  const die = (): void => void process.kill(process.pid, 'SIGKILL');
  const failed = (code: number): Error => Object.assign(new Error(`flock(2) failed with errno ${code}`), { errno: code });

  if (!process.versions['bun']) {
    type FsExt = { flockSync(fd: number, flags: 'exnb'): void; flock(fd: number, flags: 'ex', callback: (err: Error | null) => void): void };
    const { flockSync, flock } = require(fsExt) as FsExt;
    return {
      via: 'fs-ext',
      tryLock(fd) {
        try {
          flockSync(fd, 'exnb');
          return true;
        } catch (err) {
          const { code } = err as { code?: string };
          if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
          throw err;
        }
      },
      lock: (fd) => new Promise((resolve, reject) => flock(fd, 'ex', (err) => (err ? reject(err) : resolve()))),
      dieWithParent() {
        process.stdin.on('end', die).on('error', die).resume();
      },
    };
  }

  type Ffi = {
    dlopen(name: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: number[]) => unknown> };
    read: { i32(pointer: unknown, offset: number): number };
  };
  const ffi = require('bun:ffi') as Ffi;
  const symbols = {
    flock: { args: ['i32', 'i32'], returns: 'i32' },
    __errno_location: { args: [], returns: 'ptr' },
    prctl: { args: ['i32', 'u64'], returns: 'i32' },
    getppid: { args: [], returns: 'i32' },
  };
  const failures: string[] = [];
  let libc: ReturnType<Ffi['dlopen']>['symbols'] | undefined;
  // glibc's, then musl's (Alpine) C library.
  for (const name of ['libc.so.6', `libc.musl-${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}.so.1`, 'libc.so']) {
    try {
      libc = ffi.dlopen(name, symbols).symbols;
      break;
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (!libc) throw new Error(`no C library found (${failures.join('; ')})`);
  const { flock, __errno_location: errnoLocation, prctl, getppid } = libc as {
    flock: (fd: number, op: number) => number;
    __errno_location: () => unknown;
    prctl: (option: number, arg: number) => number;
    getppid: () => number;
  };
  /** flock(2) until it is not interrupted: 0, or the errno. */
  const call = (fd: number, op: number): number => {
    for (;;) {
      if (flock(fd, op) === 0) return 0;
      const code = ffi.read.i32(errnoLocation(), 0);
      if (code !== EINTR) return code;
    }
  };
  return {
    via: 'bun:ffi',
    tryLock(fd) {
      const code = call(fd, LOCK_EX | LOCK_NB);
      if (code === 0) return true;
      if (code === EAGAIN) return false;
      throw failed(code);
    },
    lock(fd) {
      const code = call(fd, LOCK_EX);
      return code === 0 ? Promise.resolve() : Promise.reject(failed(code));
    },
    dieWithParent(parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      // The parent may have died before prctl took effect: then nobody would kill us.
      if (getppid() !== parent) die();
    },
  };
}

const require = createRequire(import.meta.url);

let loaded: { flock: NativeFlock; fsExt: string } | { error: string } | undefined;

function load(): NonNullable<typeof loaded> {
  let fsExt = '';
  try {
    if (!process.versions['bun']) fsExt = require.resolve('fs-ext');
    return { flock: openNativeFlock(require, fsExt), fsExt };
  } catch (err) {
    const what = process.versions['bun'] ? 'libc flock(2) through bun:ffi' : 'the fs-ext module';
    return { error: `${what} could not be loaded (${(err as Error).message.split('\n')[0]})` };
  }
}

// Loaded with bellwether, not at the first singleton: an app that drops its
// privileges after start-up may no longer be able to read its node_modules.
loaded = load();

/** flock(2) in this process, or undefined with `nativeFlockError()` saying why not. Loaded once. */
export function nativeFlock(): NativeFlock | undefined {
  loaded ??= load();
  return 'flock' in loaded ? loaded.flock : undefined;
}

/** Why `nativeFlock()` is undefined. */
export function nativeFlockError(): string | undefined {
  loaded ??= load();
  return 'error' in loaded ? loaded.error : undefined;
}

/** fs-ext's resolved path, for the waiter process ('' on Bun). */
export function fsExtPath(): string {
  loaded ??= load();
  return 'fsExt' in loaded ? loaded.fsExt : '';
}
