/**
 * Supervisor: SIGKILL of a worker -> its replacement listening, rolling
 * restart duration, and memory (PSS and RSS), for bellwether's Supervisor
 * (workers importing `bellwether/worker`, or all of `bellwether`) beside a
 * plain node:cluster primary that re-forks on 'exit'. The clusters take
 * turns in rotating order. Node only, 127.0.0.1 only.
 */
import fs from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { getJson, freePort } from '../test/helpers/http.js';
import { fixture, node } from '../test/helpers/runtimes.js';
import { LineChild } from './lines.js';
import { memoryOf } from './memory.js';
import { statFields } from './proc.js';
import { medianDifference, summarize, table } from './stats.js';

const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

const WORKERS = 4;
/** Bound on one worker becoming ready (boot or replacement). */
const READY_TIMEOUT_MS = 15_000;
/** Bound on one rolling restart of all workers. */
const ROLLING_TIMEOUT_MS = 60_000;
/** The kill loop stops (with fewer samples, marked in the table) once it ran this long. */
const KILL_LOOP_BUDGET_MS = 120_000;
/** The fresh worker settles (finishes booting, goes idle) before the next kill. */
const SETTLE_MS = 100;
/** Idle time, after every worker listened and one request was served, before reading memory. */
const IDLE_MS = 2000;

type Event = Record<string, unknown> & { event: string };

interface Kind {
  label: string;
  /** A name for the difference tables. */
  short: string;
  start(port: number): LineChild;
  /** The worker pid of a "worker listens" event, or undefined if `e` is not one. */
  readyPid(e: Event): number | undefined;
}

/**
 * bellwether's Supervisor (a primary running only it) over `exec`.
 * Restarts at once and never counts a crash loop: a replacement per kill,
 * like the plain primary (the default policy waits 100 ms, doubling, and
 * gives a slot up after 5 exits within 60 s).
 */
const supervised = (label: string, short: string, exec: string): Kind => ({
  label,
  short,
  start: (port) =>
    new LineChild(node.bin, [
      contender('supervisor-primary'),
      JSON.stringify({ workers: WORKERS, exec, env: { PORT: String(port) }, restart: { initialDelay: 0, maxRestarts: 10_000, window: 1 } }),
    ]),
  readyPid: (e) => (e.event === 'ready' ? Number(e['workerPid']) : undefined),
});

const bellwether = supervised('bellwether Supervisor, workers import bellwether/worker', 'bellwether/worker', fixture('http-app'));
const wholeImport = supervised('bellwether Supervisor, workers import all of bellwether', 'all of bellwether', contender('http-app-whole-import'));

const plainCluster: Kind = {
  label: 'plain node:cluster, re-fork on exit',
  short: 'plain',
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


/** Starts a cluster on a free port and waits until every worker listens and one request was served. */
async function startCluster(kind: Kind): Promise<Primary> {
  const primary = new Primary(kind, await freePort());
  try {
    await primary.allReady();
    await getJson(primary.port, '/', 5000);
    return primary;
  } catch (err) {
    await primary.stop();
    throw err;
  }
}

/** Round `round`'s order: A B C, then B C A, then C A B, ... (with two: A B, B A). */
const rotated = <T>(items: readonly T[], round: number): T[] => items.map((_, i) => items[(round + i) % items.length]!);

interface KillTimes {
  kills: Map<Kind, number[]>;
  /** The kill loop hit its time budget. */
  cut: boolean;
  /** Rolling restarts of the first kind's cluster (ms). */
  rolling: number[];
}

/**
 * One cluster of each kind, all up at once and idle between kills. Each
 * round kills one worker of each cluster (worker round % WORKERS), in
 * rotating order, SETTLE_MS apart, each waiting for its replacement to
 * listen; then `rollingRounds` rolling restarts (SIGHUP) of the first kind.
 */
async function killTimes(kinds: Kind[], rounds: number, rollingRounds: number): Promise<KillTimes> {
  const primaries: Primary[] = [];
  const result: KillTimes = { kills: new Map(kinds.map((k) => [k, []])), cut: false, rolling: [] };
  try {
    // One after the other: each port is taken before the next free one is looked for.
    for (const kind of kinds) primaries.push(await startCluster(kind));
    const budgetEnd = performance.now() + KILL_LOOP_BUDGET_MS;
    for (let round = 0; round < rounds; round++) {
      if (performance.now() > budgetEnd) {
        result.cut = true;
        break;
      }
      const index = round % WORKERS;
      for (const primary of rotated(primaries, round)) {
        await sleep(SETTLE_MS);
        const victim = primary.workers.get(index)!;
        const killedAt = performance.now();
        process.kill(victim, 'SIGKILL');
        await primary.next(
          `replacement of worker ${index} (pid ${victim}) listening`,
          (e) => Number(e['index']) === index && primary.kind.readyPid(e) !== undefined && primary.kind.readyPid(e) !== victim,
          READY_TIMEOUT_MS,
        );
        result.kills.get(primary.kind)!.push(performance.now() - killedAt);
      }
    }

    const primary = primaries[0]!;
    for (let round = 0; round < rollingRounds; round++) {
      await sleep(SETTLE_MS);
      const before = new Set(primary.workers.values());
      const hupAt = performance.now();
      process.kill(primary.pid, 'SIGHUP');
      await primary.next('restarted after SIGHUP', (e) => e.event === 'restarted', ROLLING_TIMEOUT_MS);
      result.rolling.push(performance.now() - hupAt);
      const kept = [...primary.workers.values()].filter((pid) => before.has(pid));
      if (kept.length) throw new Error(`${primary.kind.label}: rolling restart kept workers ${kept.join(', ')}`);
    }
    return result;
  } finally {
    await Promise.all(primaries.map((p) => p.stop()));
  }
}

/** One fresh cluster's memory after IDLE_MS idle (MiB). */
interface Footprint {
  primary: { rss: number; pss: number };
  workers: { rss: number; pss: number }[];
  /** The primary and all its children (its workers: it starts no other process). */
  total: { rss: number; pss: number };
}

/** `runs` fresh clusters of each kind, one at a time, in rotating order, each measured after IDLE_MS idle. */
async function footprints(kinds: Kind[], runs: number): Promise<Map<Kind, Footprint[]>> {
  const result = new Map<Kind, Footprint[]>(kinds.map((k) => [k, []]));
  for (let round = 0; round < runs; round++) {
    for (const kind of rotated(kinds, round)) {
      const primary = await startCluster(kind);
      try {
        await sleep(IDLE_MS);
        const everyone = [primary.pid, ...childrenOf(primary.pid).map((p) => p.pid)].map(memoryOf);
        const sum = (field: 'rss' | 'pss'): number => everyone.reduce((total, m) => total + m[field], 0);
        result.get(kind)!.push({
          primary: memoryOf(primary.pid),
          workers: [...primary.workers.values()].map(memoryOf),
          total: { rss: sum('rss'), pss: sum('pss') },
        });
      } finally {
        await primary.stop();
      }
    }
  }
  return result;
}

const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;

/** "difference [low, high]" of the medians, 95% bootstrap interval. */
function differenceCell(a: number[], b: number[]): string {
  const d = medianDifference(a, b);
  return `${signed(d.difference)} [${signed(d.low)}, ${signed(d.high)}]`;
}

export async function supervisorBench(scale: number): Promise<string> {
  const kinds = [bellwether, wholeImport, plainCluster];
  const rounds = WORKERS * Math.max(5, Math.round(30 * scale));
  const rollingRounds = Math.max(2, Math.round(5 * scale));
  const runs = Math.max(kinds.length, Math.round(6 * scale));
  const loadBefore = os.loadavg()[0]!;
  const timed = await killTimes(kinds, rounds, rollingRounds);
  const memory = await footprints(kinds, runs);
  const loadAfter = os.loadavg()[0]!;
  const done = Math.min(...[...timed.kills.values()].map((k) => k.length));

  // A p99 only where it is not simply the maximum (nearest rank: above 100 samples).
  const withP99 = [...timed.kills.values()].every((k) => k.length > 100);
  const timing = kinds.map((kind) => {
    const s = summarize(timed.kills.get(kind)!);
    return [kind.label, s.n, s.min, s.median, ...(withP99 ? [s.p99] : []), s.max];
  });
  const kills = (kind: Kind): number[] => timed.kills.get(kind)!;
  const roll = summarize(timed.rolling);

  // Rows of the memory tables: a process (or the sum) and a measure, each run's values.
  const measures: [string, (f: Footprint) => number[]][] = [];
  for (const field of ['pss', 'rss'] as const) {
    measures.push([`primary ${field.toUpperCase()}`, (f) => [f.primary[field]]]);
    measures.push([`worker ${field.toUpperCase()} (each worker)`, (f) => f.workers.map((w) => w[field])]);
    measures.push([`primary + ${WORKERS} workers ${field.toUpperCase()}`, (f) => [f.total[field]]]);
  }
  const values = (kind: Kind, of: (f: Footprint) => number[]): number[] => memory.get(kind)!.flatMap(of);
  const spread = (xs: number[]): string => {
    const s = summarize(xs);
    return `${s.median.toFixed(2)} [${s.min.toFixed(2)}, ${s.max.toFixed(2)}]`;
  };

  const pairs: [Kind, Kind][] = [
    [bellwether, plainCluster],
    [wholeImport, bellwether],
  ];
  return [
    table(
      `Supervisor, Node, 3 clusters of ${WORKERS} workers up at once: SIGKILL of a worker -> its replacement's listening event read by the bench (ms); ${done} rounds${timed.cut ? ` (of ${rounds}: the ${KILL_LOOP_BUDGET_MS / 1000} s budget cut the rest)` : ''}, each killing one worker of each cluster in rotating order, ${SETTLE_MS} ms apart`,
      ['cluster', 'n', 'min', 'median', ...(withP99 ? ['p99'] : []), 'max'],
      timing,
    ),
    table(
      'Difference of the medians (ms), 95% bootstrap interval',
      ['comparison', 'difference [95% CI]'],
      pairs.map(([a, b]) => [`${a.short} - ${b.short}`, differenceCell(kills(a), kills(b))]),
    ),
    `\nrolling restart of ${WORKERS} workers (SIGHUP -> restarted), ${bellwether.label}: n ${roll.n}, min ${roll.min.toFixed(2)}, median ${roll.median.toFixed(2)}, max ${roll.max.toFixed(2)} ms`,
    table(
      `Supervisor memory (MiB, /proc/<pid>/smaps_rollup), ${runs} fresh clusters of each kind one at a time in rotating order, each read ${IDLE_MS / 1000} s after its workers listened; median [min, max] over the runs (workers: over every worker of every run)`,
      ['measure', 'n per kind', ...kinds.map((k) => k.short)],
      measures.map(([label, of]) => [label, values(kinds[0]!, of).length, ...kinds.map((k) => spread(values(k, of)))]),
    ),
    table(
      'Difference of the medians (MiB), 95% bootstrap interval',
      ['measure', ...pairs.map(([a, b]) => `${a.short} - ${b.short}`)],
      measures.map(([label, of]) => [label, ...pairs.map(([a, b]) => differenceCell(values(a, of), values(b, of)))]),
    ),
    `\nload average (1 min) of the machine: ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after`,
  ].join('\n');
}
