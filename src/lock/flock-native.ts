import { createRequire } from 'node:module';

/**
 * flock(2) called in this process, without a thread: only the non-blocking
 * forms (a blocking call here would stall the event loop or hold a
 * threadpool thread, see flock-wait.ts). On Node it comes from fs-ext (an
 * optional dependency with a native build); on Bun from libc through
 * bun:ffi, because native addons that use libuv are not safe there.
 */
export interface NativeFlock {
  /** Which library gives flock(2): named in messages and benchmarks. */
  readonly via: 'fs-ext' | 'bun:ffi';
  /** LOCK_EX | LOCK_NB on `fd`: true when taken, false when someone holds it; throws on any other error. */
  tryLock(fd: number): boolean;
  /**
   * LOCK_EX on `fd`, waiting: only for a waiter process of our own, which
   * does nothing else (on Node it holds a threadpool thread, on Bun it
   * blocks the thread).
   */
  lock(fd: number): Promise<void>;
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EINTR = 4;
const EAGAIN = 11;

const require = createRequire(import.meta.url);

let loaded: { flock: NativeFlock } | { error: string } | undefined;

/** The in-process flock(2), or undefined with `nativeFlockError()` saying why not. Loaded once. */
export function nativeFlock(): NativeFlock | undefined {
  loaded ??= load();
  return 'flock' in loaded ? loaded.flock : undefined;
}

/** Why `nativeFlock()` is undefined. */
export function nativeFlockError(): string | undefined {
  nativeFlock();
  return loaded && 'error' in loaded ? loaded.error : undefined;
}

function load(): { flock: NativeFlock } | { error: string } {
  try {
    return { flock: process.versions['bun'] ? libcThroughFfi() : fsExt() };
  } catch (err) {
    const what = process.versions['bun'] ? 'libc flock(2) through bun:ffi' : 'the fs-ext module';
    return { error: `${what} could not be loaded (${(err as Error).message.split('\n')[0]})` };
  }
}

interface FsExt {
  flockSync(fd: number, flags: 'exnb'): void;
  flock(fd: number, flags: 'ex', callback: (err: Error | null) => void): void;
}

function fsExt(): NativeFlock {
  const { flockSync, flock } = require('fs-ext') as FsExt;
  return {
    via: 'fs-ext',
    tryLock(fd) {
      try {
        flockSync(fd, 'exnb');
        return true;
      } catch (err) {
        const { code } = err as NodeJS.ErrnoException;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
        throw err;
      }
    },
    lock(fd) {
      return new Promise((resolve, reject) => flock(fd, 'ex', (err) => (err ? reject(err) : resolve())));
    },
  };
}

/** glibc's, then musl's (Alpine) C library. */
const LIBC_NAMES = ['libc.so.6', 'libc.musl-x86_64.so.1', 'libc.musl-aarch64.so.1', 'libc.so'];

interface BunFfi {
  dlopen(name: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: never[]) => unknown> };
  read: { i32(pointer: unknown, offset: number): number };
}

/** Functions of the C library, on Bun, by their bun:ffi signatures. */
export function libc<T>(symbols: Record<keyof T, { args: string[]; returns: string }>): T {
  const ffi = require('bun:ffi') as BunFfi;
  const failures: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      return ffi.dlopen(name, symbols).symbols as T;
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new Error(`no C library found (${failures.join('; ')})`);
}

function libcThroughFfi(): NativeFlock {
  const ffi = require('bun:ffi') as BunFfi;
  const { flock, __errno_location: errnoLocation } = libc<{ flock: (fd: number, op: number) => number; __errno_location: () => unknown }>({
    flock: { args: ['i32', 'i32'], returns: 'i32' },
    __errno_location: { args: [], returns: 'ptr' },
  });
  const errno = (): number => ffi.read.i32(errnoLocation(), 0);
  const call = (fd: number, op: number): number => {
    for (;;) {
      if (flock(fd, op) === 0) return 0;
      const code = errno();
      if (code !== EINTR) return code;
    }
  };
  return {
    via: 'bun:ffi',
    tryLock(fd) {
      const code = call(fd, LOCK_EX | LOCK_NB);
      if (code === 0) return true;
      if (code === EAGAIN) return false;
      throw Object.assign(new Error(`flock(2) failed with errno ${code}`), { errno: code });
    },
    lock(fd) {
      const code = call(fd, LOCK_EX);
      if (code === 0) return Promise.resolve();
      return Promise.reject(Object.assign(new Error(`flock(2) failed with errno ${code}`), { errno: code }));
    },
  };
}
