/**
 * Host failover: time from SIGKILL of the lock holder to the waiter's job
 * starting, for bellwether (Node, Bun) and what users would pick instead,
 * against a floor: a C program already blocked in flock(2) stamping the
 * clock as it wakes. Every waiter is behind the same kind of holder.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { flockRequests, waitForBlockedWaiters } from '../test/helpers/proc-locks.js';
import { bun, fixture, node } from '../test/helpers/runtimes.js';
import { withoutUtilLinux } from '../test/helpers/without-util-linux.js';
import { LineChild } from './lines.js';
import { memoryOf } from './memory.js';
import { checkSameClock, compileFloorWaiter } from './floor-waiter.js';
import { medianDifference, summarize, table } from './stats.js';

const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

interface Kind {
  label: string;
  /** Waiters queue in the kernel (flock), so readiness is visible in /proc/locks. */
  kernelQueue: boolean;
  start(dir: string, name: string): LineChild;
}

const bellwetherNode: Kind = {
  label: 'bellwether, Node',
  kernelQueue: true,
  start: (dir, name) => new LineChild(node.bin, [contender('bellwether'), dir, name]),
};
const bellwetherBun: Kind = {
  label: 'bellwether, Bun',
  kernelQueue: true,
  start: (dir, name) => new LineChild(bun.bin, [contender('bellwether'), dir, name]),
};
const fsExtNode: Kind = {
  label: 'fs-ext async flock, Node',
  kernelQueue: true,
  start: (dir, name) => new LineChild(node.bin, [contender('fs-ext'), dir, name]),
};
/** Tools directory of the runs without util-linux (made by hostFailover, removed after it). */
let hiddenTools: string | undefined;

/** bellwether on a host without util-linux: its built-in waiter, a process of its own runtime. */
function builtIn(runtime: typeof node): Kind {
  return {
    label: `bellwether, ${runtime.name === 'node' ? 'Node' : 'Bun'}, no util-linux`,
    kernelQueue: true,
    start: (dir, name) => {
      const { wrapper, env } = withoutUtilLinux(hiddenTools as string);
      return new LineChild(wrapper[0] as string, [...wrapper.slice(1), runtime.bin, contender('bellwether'), dir, name], env);
    },
  };
}
const builtInNode = builtIn(node);
const builtInBun = builtIn(bun);

const properLockfileNode: Kind = {
  label: 'proper-lockfile defaults, Node',
  kernelQueue: false,
  start: (dir, name) => new LineChild(node.bin, [contender('proper-lockfile'), dir, name]),
};

/**
 * A waiter has usually waited a while when the holder dies: it is idle
 * this long first. Not less: in the first few hundred ms after its start a
 * runtime still works in the background (a Bun waiter 100 ms after its
 * start took over about 5 ms later than one idle for 1 s, in the same run;
 * a row below shows it).
 */
const WAITER_IDLE_MS = 1000;
/** The idle time of the row that shows a takeover soon after the waiter started. */
const JUST_STARTED_IDLE_MS = 100;

/**
 * Kills a `holder`-kind process holding the lock and times how long a
 * `waiter`-kind process takes to report it runs (for proper-lockfile, whose
 * holder is not a flock(2) holder).
 */
async function measure(holderKind: Kind, waiterKind: Kind, takeovers: number): Promise<number[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-'));
  const name = 'job';
  const samples: number[] = [];
  let holder = holderKind.start(dir, name);
  try {
    await holder.until('acquired');
    for (let i = 0; i < takeovers; i++) {
      const waiter = waiterKind.start(dir, name);
      try {
        if (waiterKind.kernelQueue) await waitForBlockedWaiters(path.join(dir, `${name}.lock`), 1);
        else await waiter.until('ready');
        await sleep(WAITER_IDLE_MS);
        const killedAt = performance.now();
        holder.child.kill('SIGKILL');
        await waiter.until('acquired', 30_000);
        samples.push(performance.now() - killedAt);
      } finally {
        await holder.kill();
      }
      holder = waiter;
      if (waiterKind !== holderKind) {
        await holder.kill();
        holder = holderKind.start(dir, name);
        await holder.until('acquired');
      }
    }
  } finally {
    await holder.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return samples;
}

export async function hostFailover(scale: number): Promise<string> {
  hiddenTools = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-tools-'));
  try {
    return `${await failover(scale)}\n${await waiterMemory()}`;
  } finally {
    fs.rmSync(hiddenTools, { recursive: true, force: true });
  }
}

/** A waiter that prints "stamp <ns>" (CLOCK_MONOTONIC) when it has the lock, then "acquired". */
interface Setup {
  label: string;
  start(dir: string, name: string): LineChild;
  /** How long the waiter is idle, blocked, before the kill (WAITER_IDLE_MS unless said). */
  idleMs?: number;
}

interface Takeover {
  /** From the kill's stamp to the waiter's own stamp (ms). */
  wake: number;
  /** From the kill's stamp to the benchmark reading the waiter's "acquired" line (ms). */
  read: number;
  /** The holder's resident memory just before the kill (MiB). */
  holderRss: number;
  /**
   * From the holder's reaping (waitpid(2) returning in its parent, the
   * reaper) to the waiter's stamp (ms): the takeover without the holder's
   * exit, whose length varies the most. Undefined without the reaper.
   */
  afterReap?: number;
}

/**
 * One takeover: a fresh bellwether Node holder (`holderMib` MiB of ballast
 * made resident), a `setup` waiter blocked behind it in the kernel, idle
 * for a while (as a waiter usually is when the holder dies), then SIGKILL
 * of the holder, stamped on the same clock as the waiters' stamps.
 */
async function takeover(dir: string, setup: Setup, holderMib: number, reaper: string | undefined): Promise<Takeover> {
  const name = 'job';
  const holderArgs = [node.bin, contender('bellwether'), dir, name];
  const env = { BENCH_HOLDER_MIB: String(holderMib) };
  // Under the reaper, the holder is the reaper's child (killed with it).
  const holder = reaper ? new LineChild(reaper, holderArgs, env) : new LineChild(holderArgs[0]!, holderArgs.slice(1), env);
  try {
    const holderPid = reaper ? Number(/^holder (\d+)$/.exec(await holder.line(30_000))?.[1]) : (holder.child.pid as number);
    if (!Number.isSafeInteger(holderPid)) throw new Error(`no holder pid from ${reaper ?? node.bin}`);
    await holder.until('acquired', 30_000);
    const waiter = setup.start(dir, name);
    try {
      await waitForBlockedWaiters(path.join(dir, `${name}.lock`), 1);
      await sleep(setup.idleMs ?? WAITER_IDLE_MS);
      const holderRss = memoryOf(holderPid).rss;
      const killedAt = process.hrtime.bigint();
      process.kill(holderPid, 'SIGKILL');
      let line: string;
      do line = await waiter.line(30_000);
      while (!line.startsWith('stamp '));
      await waiter.until('acquired', 30_000);
      const readAt = process.hrtime.bigint();
      const stamp = BigInt(line.slice('stamp '.length));
      const ms = (ns: bigint): number => Number(ns - killedAt) / 1e6;
      let afterReap: number | undefined;
      if (reaper) {
        let reaped: string;
        do reaped = await holder.line(30_000);
        while (!reaped.startsWith('reaped '));
        afterReap = Number(stamp - BigInt(reaped.slice('reaped '.length))) / 1e6;
      }
      return { wake: ms(stamp), read: ms(readAt), holderRss, afterReap };
    } finally {
      await waiter.kill();
    }
  } finally {
    await holder.kill();
  }
}

/** `rounds` takeovers of each setup, in rotating order (A B C, B C A, ...): drift of the machine spreads over all of them. */
async function rotate(setups: Setup[], rounds: number, holderMib: number, reaper: string | undefined): Promise<Map<Setup, Takeover[]>> {
  const results = new Map<Setup, Takeover[]>(setups.map((setup) => [setup, []]));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-'));
  try {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < setups.length; i++) {
        const setup = setups[(round + i) % setups.length]!;
        results.get(setup)!.push(await takeover(dir, setup, holderMib, reaper));
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

/** The large holder: how the holder's exit, which releases the lock, grows with its memory. */
const BIG_HOLDER_MIB = 500;

async function failover(scale: number): Promise<string> {
  const n = (count: number): number => Math.max(2, Math.round(count * scale));
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-floor-'));
  try {
    const { program, reaper, why } = compileFloorWaiter(bin);
    checkSameClock(node.bin, [contender('monotonic'), '--print']);
    checkSameClock(bun.bin, [contender('monotonic'), '--print']);
    if (program) checkSameClock(program, ['--now']);
    const floor: Setup | undefined = program === undefined ? undefined : { label: 'C program blocked in flock(2) (floor)', start: (dir, name) => new LineChild(program, [path.join(dir, `${name}.lock`)]) };
    const flockShell: Setup | undefined = program === undefined ? undefined : {
      label: '`flock -o <file> -c <command>` (the command\'s start)',
      start: (dir, name) => new LineChild('flock', ['-o', path.join(dir, `${name}.lock`), '-c', `exec ${program} --now`]),
    };
    const setups: Setup[] = [
      ...(floor ? [floor] : []),
      { label: 'bellwether, Node (run called)', start: bellwetherNode.start },
      { label: 'bellwether, Bun (run called)', start: bellwetherBun.start },
      { label: `bellwether, Bun, ${JUST_STARTED_IDLE_MS} ms after its start`, start: bellwetherBun.start, idleMs: JUST_STARTED_IDLE_MS },
      // What compiling on first use costs the takeover: V8 compiles everything at load instead (not for production).
      { label: 'bellwether, Node --no-lazy', start: (dir, name) => new LineChild(node.bin, ['--no-lazy', contender('bellwether'), dir, name]) },
      { label: 'bellwether, Node, no util-linux', start: builtInNode.start },
      { label: 'bellwether, Bun, no util-linux', start: builtInBun.start },
      { label: 'fs-ext async flock, Node', start: fsExtNode.start },
      ...(flockShell ? [flockShell] : []),
    ];
    const small = await rotate(setups, n(12), 0, reaper);
    const bigSetups = [...(floor ? [floor] : []), setups.find((s) => s.label.startsWith('bellwether, Node'))!];
    const big = await rotate(bigSetups, n(8), BIG_HOLDER_MIB, reaper);
    const rows: (string | number)[][] = [];
    /** `takeovers` beside the floor's (`base`), from the kill and from the reaping. */
    const row = (label: string, takeovers: Takeover[], base: Takeover[] | undefined): void => {
      const cells = (pick: (t: Takeover) => number | undefined): { median: number; versus: string; ratio: string } => {
        const samples = takeovers.map(pick).filter((x) => x !== undefined);
        const floorSamples = (base ?? []).map(pick).filter((x) => x !== undefined);
        const median = samples.length > 0 ? summarize(samples).median : Number.NaN;
        if (base === undefined || base === takeovers || floorSamples.length === 0 || samples.length === 0) return { median, versus: 'floor', ratio: '' };
        const d = medianDifference(samples, floorSamples);
        return { median, versus: `${d.difference.toFixed(2)} [${d.low.toFixed(2)}, ${d.high.toFixed(2)}]`, ratio: (median / summarize(floorSamples).median).toFixed(2) };
      };
      const s = summarize(takeovers.map((t) => t.wake));
      const fromKill = cells((t) => t.wake);
      const fromReap = cells((t) => t.afterReap);
      rows.push([label, s.n, s.min, s.median, s.max, fromKill.versus, fromKill.ratio, Number.isNaN(fromReap.median) ? '' : fromReap.median, fromReap.versus, summarize(takeovers.map((t) => t.read)).median]);
    };
    const floorTakeovers = floor && small.get(floor);
    for (const [setup, takeovers] of small) row(setup.label, takeovers, floorTakeovers);
    const bigFloor = floor && big.get(floor);
    const bigRss = summarize([...big.values()].flat().map((t) => t.holderRss)).median;
    for (const [setup, takeovers] of big) {
      row(`${BIG_HOLDER_MIB} MiB holder (RSS ${bigRss.toFixed(0)} MiB) -> ${setup.label}`, takeovers, setup === floor ? floorTakeovers : bigFloor);
    }
    const smallRss = summarize([...small.values()].flat().map((t) => t.holderRss)).median;
    const plock = summarize(await measure(properLockfileNode, properLockfileNode, Math.max(1, Math.round(2 * scale))));
    return [
      table(
        `Host failover: SIGKILL of a bellwether Node holder (RSS ${smallRss.toFixed(0)} MiB unless said) -> the waiter's own CLOCK_MONOTONIC stamp on taking the lock (ms)`,
        [
          'waiter',
          'n',
          'min',
          'median',
          'max',
          'median - floor [95% CI]',
          'median / floor',
          "from the holder's reaping: median",
          'its median - floor [95% CI]',
          'median, line read by the bench',
        ],
        rows,
      ),
      why ?? '',
      `proper-lockfile defaults, Node (holder and waiter proper-lockfile): ${plock.n} takeovers, median ${plock.median.toFixed(0)} ms (SIGKILL -> line read)`,
    ].join('\n');
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
}

/**
 * What a waiting singleton costs beyond its own process: the waiter
 * process queued in flock(2) for it (flock(1) under setpriv, or the
 * built-in waiter), measured with 4 waiting singletons behind a holder.
 */
async function waiterMemory(): Promise<string> {
  const WAITING = 4;
  const rows: (string | number)[][] = [];
  for (const kind of [bellwetherNode, builtInNode, bellwetherBun, builtInBun]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-'));
    const file = path.join(dir, 'job.lock');
    const processes = [kind.start(dir, 'job')];
    try {
      await processes[0]!.until('acquired');
      for (let i = 0; i < WAITING; i++) processes.push(kind.start(dir, 'job'));
      await waitForBlockedWaiters(file, WAITING);
      const waiters = flockRequests(file).blockedPids.map((pid) => ({ program: path.basename(fs.realpathSync(`/proc/${pid}/exe`)), ...memoryOf(pid) }));
      const rss = summarize(waiters.map((w) => w.rss));
      const pss = summarize(waiters.map((w) => w.pss));
      rows.push([kind.label, waiters[0]!.program, WAITING, rss.median.toFixed(1), pss.median.toFixed(1)]);
    } finally {
      await Promise.all(processes.map((p) => p.kill()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return table('Memory of the waiter process behind each waiting singleton (MiB)', ['singleton', 'waiter program', 'waiting', 'RSS median', 'PSS median'], rows);
}

/** 4 concurrent pbkdf2 in a process that also has 4 lock waiters (UV_THREADPOOL_SIZE=4). */
export async function threadpool(scale: number): Promise<string> {
  const rounds = Math.max(1, Math.round(5 * scale));
  const modes = [
    ['no waiters', 'none'],
    ['4 waiting bellwether singletons', 'bellwether'],
    ['4 waiting fs-ext async flocks', 'fs-ext'],
  ] as const;
  const rows: (string | number)[][] = [];
  for (const [label, mode] of modes) {
    const samples: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-'));
      const file = path.join(dir, 'busy.lock');
      fs.writeFileSync(file, '', { mode: 0o600 });
      const operator = new LineChild('flock', ['-o', file, '-c', 'echo acquired; exec cat']);
      const proc = new LineChild(node.bin, [fixture('threadpool-waiters'), mode, dir], { UV_THREADPOOL_SIZE: '4' });
      try {
        await operator.until('acquired');
        await proc.line(); // waiting
        if (mode !== 'none') await waitForBlockedWaiters(file, 4);
        proc.child.stdin!.write('pbkdf2\n');
        // A stalled pool would wait forever: the operator lets go after 1 s.
        const release = setTimeout(() => operator.child.stdin!.end(), 1000);
        let done: { event: string; ms: number };
        do done = JSON.parse(await proc.line(30_000)) as typeof done;
        while (done.event !== 'pbkdf2-done');
        clearTimeout(release);
        samples.push(done.ms);
      } finally {
        await proc.kill();
        await operator.kill();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    const s = summarize(samples);
    rows.push([label, s.n, s.median, s.max >= 1000 ? 'yes, until the lock was released after 1 s' : 'no']);
  }
  return table('4 concurrent crypto.pbkdf2 (20k iterations) beside lock waiters, Node (ms)', ['process', 'runs', 'median', 'stalled'], rows);
}
