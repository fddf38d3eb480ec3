/**
 * Host failover: time from SIGKILL of the lock holder to the waiter's job
 * starting, for bellwether (Node, Bun) and what users would pick instead.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { flockRequests, waitForBlockedWaiters } from '../test/helpers/proc-locks.js';
import { bun, fixture, node } from '../test/helpers/runtimes.js';
import { withoutUtilLinux } from '../test/helpers/without-util-linux.js';
import { LineChild } from './lines.js';
import { summarize, table } from './stats.js';

const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

interface Kind {
  label: string;
  /** Waiters queue in the kernel (flock), so readiness is visible in /proc/locks. */
  kernelQueue: boolean;
  start(dir: string, name: string): LineChild;
}

const flock1: Kind = {
  label: 'flock(1)',
  kernelQueue: true,
  start: (dir, name) => new LineChild('flock', ['-o', path.join(dir, `${name}.lock`), '-c', 'echo acquired; exec cat']),
};
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

/** A waiter has usually waited a while when the holder dies: let it go idle first. */
const WAITER_IDLE_MS = 100;

/**
 * Kills a `holder`-kind process holding the lock and times how long a
 * `waiter`-kind process takes to report it runs. The floor for a runtime is
 * a flock(1) waiter behind a holder of that runtime: the killed process's
 * exit (which releases the lock) dominates, and it differs by runtime.
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

async function failover(scale: number): Promise<string> {
  const n = (count: number): number => Math.max(1, Math.round(count * scale));
  const rows: (string | number)[][] = [];
  const row = (label: string, samples: number[], floor?: number): number => {
    const s = summarize(samples);
    rows.push([label, s.n, s.min, s.median, s.p99, floor ? `${(s.median / floor).toFixed(2)}x` : 'floor']);
    return s.median;
  };
  for (const runtime of [bellwetherNode, bellwetherBun]) {
    const holderName = runtime.label.split(', ')[1];
    const floor = row(`${holderName} holder -> flock(1) waiter`, await measure(runtime, flock1, n(50)));
    row(`${holderName} holder -> ${runtime.label}`, await measure(runtime, runtime, n(50)), floor);
    const hidden = runtime === bellwetherNode ? builtInNode : builtInBun;
    row(`${holderName} holder -> ${hidden.label}`, await measure(runtime, hidden, n(50)), floor);
    if (runtime === bellwetherNode) {
      row(`Node holder -> ${fsExtNode.label}`, await measure(fsExtNode, fsExtNode, n(50)), floor);
      row(`Node holder -> ${properLockfileNode.label}`, await measure(properLockfileNode, properLockfileNode, n(3)), floor);
    }
  }
  return table(
    'Host failover: SIGKILL of the holder -> the waiter runs the job (ms)',
    ['holder -> waiter', 'takeovers', 'min', 'median', 'p99', 'median vs floor'],
    rows,
  );
}

/** Resident and proportional memory of a process, from the kernel (MiB). */
function memoryOf(pid: number): { rss: number; pss: number } {
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1]);
  return { rss: kib('Rss') / 1024, pss: kib('Pss') / 1024 };
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
