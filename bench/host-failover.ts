/**
 * Host failover: time from SIGKILL of the lock holder to the waiter's job
 * starting, for bellwether (Node, Bun) and what users would pick instead.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitForBlockedWaiters } from '../test/helpers/proc-locks.js';
import { bun, fixture, node } from '../test/helpers/runtimes.js';
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
