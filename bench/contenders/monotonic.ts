/**
 * CLOCK_MONOTONIC in nanoseconds, the clock the benchmark stamps kills on.
 * Node's process.hrtime.bigint() is it (libuv's uv_hrtime); Bun's counts
 * from the process's start, so Bun reads clock_gettime(2) through bun:ffi.
 * Run directly, prints "stamp <ns>" (the benchmark checks the clock with it).
 */
type Clock = () => bigint;

async function bunClock(): Promise<Clock> {
  // @ts-expect-error: bun:ffi exists only under Bun
  const { dlopen, ptr } = (await import('bun:ffi')) as {
    dlopen: (lib: string, symbols: object) => { symbols: { clock_gettime: (id: number, at: unknown) => number } };
    ptr: (array: BigInt64Array) => unknown;
  };
  const libc = dlopen('libc.so.6', { clock_gettime: { args: ['i32', 'ptr'], returns: 'i32' } });
  const time = new BigInt64Array(2);
  const at = ptr(time);
  const CLOCK_MONOTONIC = 1;
  return () => {
    libc.symbols.clock_gettime(CLOCK_MONOTONIC, at);
    return time[0]! * 1_000_000_000n + time[1]!;
  };
}

export const monotonicNs: Clock = process.versions['bun'] ? await bunClock() : () => process.hrtime.bigint();

if (process.argv[2] === '--print') process.stdout.write(`stamp ${monotonicNs()}\n`);
