/**
 * Supervisor: SIGKILL of a worker -> its replacement listening, rolling
 * restart duration, and memory, for bellwether's Supervisor beside a plain
 * node:cluster primary that re-forks on 'exit'. Node only, 127.0.0.1 only.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { getJson, freePort } from '../test/helpers/http.js';
import { fixture, node } from '../test/helpers/runtimes.js';
import { LineChild } from './lines.js';
import { summarize, table } from './stats.js';

const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

const WORKERS = 4;
/** Bound on one worker becoming ready (boot or replacement). */
const READY_TIMEOUT_MS = 15_000;
/** Bound on one rolling restart of all workers. */
const ROLLING_TIMEOUT_MS = 60_000;
/** Each kill loop stops (with fewer samples, marked in the table) once it ran this long. */
const KILL_LOOP_BUDGET_MS = 45_000;
/** The fresh worker settles (finishes booting, goes idle) before the next kill. */
const SETTLE_MS = 100;
/** Idle time before reading RSS. */
const IDLE_MS = 1000;

type Event = Record<string, unknown> & { event: string };

interface Kind {
  label: string;
  start(port: number): LineChild;
  /** The worker pid of a "worker listens" event, or undefined if `e` is not one. */
  readyPid(e: Event): number | undefined;
}

const bellwether: Kind = {
  label: 'bellwether Supervisor',
  // Restarts at once and never counted as a crash loop: a replacement per
  // kill, like the plain primary (the default policy waits 100 ms, doubling,
  // and gives a slot up after 5 exits within 60 s).
  start: (port) =>
    new LineChild(node.bin, [
      fixture('supervisor-primary'),
      JSON.stringify({ workers: WORKERS, env: { PORT: String(port) }, restart: { initialDelay: 0, maxRestarts: 10_000, window: 1 } }),
    ]),
  readyPid: (e) => (e.event === 'ready' ? Number(e['workerPid']) : undefined),
};

const plainCluster: Kind = {
  label: 'plain node:cluster, re-fork on exit',
  start: (port) => new LineChild(node.bin, [contender('plain-cluster-primary'), String(WORKERS)], { PORT: String(port) }),
  readyPid: (e) => (e.event === 'listening' ? Number(e['pid']) : undefined),
};

/** A running primary: its event lines, and the current worker pid of each index. */
class Primary {
  readonly child: LineChild;
  readonly workers = new Map<number, number>();

  constructor(
    readonly kind: Kind,
    readonly port: number,
  ) {
    this.child = kind.start(port);
  }

  get pid(): number {
    return this.child.child.pid!;
  }

  /** Reads events until one matches; every event seen updates the worker map. Bounded by `timeoutMs`. */
  async next(what: string, match: (e: Event) => boolean, timeoutMs: number): Promise<Event> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0 || this.child.child.exitCode !== null || this.child.child.signalCode !== null) {
        throw new Error(`${this.kind.label} (pid ${this.pid}): no ${what} within ${timeoutMs} ms${left > 0 ? ' (the primary exited)' : ''}`);
      }
      let line: string;
      try {
        line = await this.child.line(left);
      } catch {
        throw new Error(`${this.kind.label} (pid ${this.pid}): no ${what} within ${timeoutMs} ms`);
      }
      let e: Event;
      try {
        e = JSON.parse(line) as Event;
      } catch {
        continue; // not an event line
      }
      if (e.event === 'error') throw new Error(`${this.kind.label} reported an error: ${String(e['message'])}`);
      const pid = this.kind.readyPid(e);
      if (pid !== undefined) this.workers.set(Number(e['index']), pid);
      if (match(e)) return e;
    }
  }

  /** Waits until every index has a listening worker. */
  async allReady(): Promise<void> {
    await this.next(`${WORKERS} listening workers`, () => this.workers.size === WORKERS, READY_TIMEOUT_MS);
  }

  /**
   * Stops the primary with SIGTERM (bellwether: a graceful stop; plain: the
   * primary dies and its workers leave on the lost IPC channel); anything
   * left after 5 s, the primary or its workers, gets SIGKILL. Waits until they are gone.
   */
  async stop(): Promise<void> {
    const everyone = [procOf(this.pid), ...childrenOf(this.pid)].filter((p) => p !== undefined);
    const { child } = this.child;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    let deadline = performance.now() + 5000;
    while (everyone.some(alive) && performance.now() < deadline) await sleep(20);
    for (const p of everyone.filter(alive)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.race([this.child.kill(), sleep(5000)]);
    deadline = performance.now() + 5000;
    while (everyone.some(alive) && performance.now() < deadline) await sleep(20);
    const left = everyone.filter(alive).map((p) => p.pid);
    if (left.length) console.error(`${this.kind.label}: processes ${left.join(', ')} still alive 5 s after SIGKILL`);
  }
}

/** A process by pid and start time, so a reused pid is not taken for it. */
interface Proc {
  pid: number;
  start: string;
}

/** Fields of /proc/<pid>/stat from the state on (comm may hold spaces: split after the last ')'). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // gone
  }
}

function procOf(pid: number): Proc | undefined {
  const fields = statFields(pid);
  return fields ? { pid, start: fields[19]! } : undefined;
}

/** The children of `pid` (Linux /proc). */
function childrenOf(pid: number): Proc[] {
  const children: Proc[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields && Number(fields[1]) === pid) children.push({ pid: Number(entry), start: fields[19]! });
  }
  return children;
}

/** Still the same process, and not a zombie (PID 1 here may reap orphans slowly). */
function alive(p: Proc): boolean {
  const fields = statFields(p.pid);
  return fields !== undefined && fields[19] === p.start && fields[0] !== 'Z';
}

/** Resident memory of a process in MiB (VmRSS of /proc/<pid>/status). */
function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}

interface Result {
  primaryMiB: number;
  workerMiB: number[];
  kills: number[];
  /** The kill loop hit its time budget. */
  cut: boolean;
  rolling: number[];
}

/** One primary: memory when idle, then `killsEach` SIGKILLs of every worker, then `rollingRounds` rolling restarts (SIGHUP). */
async function measure(kind: Kind, killsEach: number, rollingRounds: number): Promise<Result> {
  const primary = new Primary(kind, await freePort());
  try {
    await primary.allReady();
    // It serves on loopback.
    await getJson(primary.port, '/', 5000);
    await sleep(IDLE_MS);
    const result: Result = {
      primaryMiB: rssMiB(primary.pid),
      workerMiB: [...primary.workers.values()].map(rssMiB),
      kills: [],
      cut: false,
      rolling: [],
    };

    const budgetEnd = performance.now() + KILL_LOOP_BUDGET_MS;
    kills: for (let round = 0; round < killsEach; round++) {
      for (let index = 0; index < WORKERS; index++) {
        if (performance.now() > budgetEnd) {
          result.cut = true;
          break kills;
        }
        await sleep(SETTLE_MS);
        const victim = primary.workers.get(index)!;
        const killedAt = performance.now();
        process.kill(victim, 'SIGKILL');
        await primary.next(
          `replacement of worker ${index} (pid ${victim}) listening`,
          (e) => Number(e['index']) === index && kind.readyPid(e) !== undefined && kind.readyPid(e) !== victim,
          READY_TIMEOUT_MS,
        );
        result.kills.push(performance.now() - killedAt);
      }
    }

    for (let round = 0; round < rollingRounds; round++) {
      await sleep(SETTLE_MS);
      const before = new Set(primary.workers.values());
      const hupAt = performance.now();
      process.kill(primary.pid, 'SIGHUP');
      await primary.next('restarted after SIGHUP', (e) => e.event === 'restarted', ROLLING_TIMEOUT_MS);
      result.rolling.push(performance.now() - hupAt);
      const kept = [...primary.workers.values()].filter((pid) => before.has(pid));
      if (kept.length) throw new Error(`${kind.label}: rolling restart kept workers ${kept.join(', ')}`);
    }
    return result;
  } finally {
    await primary.stop();
  }
}

const median = (values: number[]): number => summarize(values).median;

export async function supervisorBench(scale: number): Promise<string> {
  const killsEach = Math.max(5, Math.round(30 * scale));
  const rollingRounds = Math.max(2, Math.round(5 * scale));
  const bw = await measure(bellwether, killsEach, rollingRounds);
  const plain = await measure(plainCluster, killsEach, 0);

  const timing: (string | number)[][] = [];
  const plainKills = summarize(plain.kills);
  for (const [kind, r] of [
    [bellwether, bw],
    [plainCluster, plain],
  ] as const) {
    const s = summarize(r.kills);
    timing.push([
      `SIGKILL -> replacement listening, ${kind.label}${r.cut ? ' (time budget hit)' : ''}`,
      s.n,
      s.min,
      s.median,
      s.p99,
      s.max,
      r === plain ? 'baseline' : `${(s.median / plainKills.median).toFixed(2)}x`,
    ]);
  }
  const roll = summarize(bw.rolling);
  timing.push([`rolling restart of ${WORKERS} workers (SIGHUP -> restarted), ${bellwether.label}`, roll.n, roll.min, roll.median, '-', roll.max, '-']);

  const memory: (string | number)[][] = [];
  const total = (r: Result): number => r.primaryMiB + r.workerMiB.reduce((a, b) => a + b, 0);
  memory.push([bellwether.label, bw.primaryMiB, median(bw.workerMiB), total(bw)]);
  memory.push([plainCluster.label, plain.primaryMiB, median(plain.workerMiB), total(plain)]);
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
  memory.push([
    'difference (bellwether - plain)',
    signed(bw.primaryMiB - plain.primaryMiB),
    signed(median(bw.workerMiB) - median(plain.workerMiB)),
    signed(total(bw) - total(plain)),
  ]);

  return [
    table(
      `Supervisor, Node, ${WORKERS} workers (ms; kills are ${killsEach} per worker, ${SETTLE_MS} ms apart)`,
      ['measurement', 'n', 'min', 'median', 'p99', 'max', 'median vs plain'],
      timing,
    ),
    table(
      `Supervisor memory, ${WORKERS} idle workers after ${IDLE_MS / 1000} s idle (VmRSS, MiB)`,
      ['primary', 'primary RSS', 'median worker RSS', `primary + ${WORKERS} workers`],
      memory,
    ),
  ].join('\n');
}
