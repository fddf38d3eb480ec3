/**
 * host+cluster under a Supervisor with zk, on one real ZooKeeper on loopback.
 * Each host is a Supervisor process (test/fixtures/fleet-primary) with its
 * own lock directory. Measures:
 * - the leading worker SIGKILLed: time until a sibling's job runs, with the
 *   primary's ballot (now) and with each worker's own session (before),
 *   against a host singleton's takeover under the same supervisor;
 * - the leading primary SIGKILLed: time until another host's job runs;
 * - the primary SIGSTOPped: when its worker's job is told to stop against the
 *   primary's step-down deadline, the IPC transit of the leases, and the
 *   margin left before another host could lead.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Fixture, type FixtureEvent, Fixtures, startFixture } from '../test/helpers/child.js';
import { bounded } from '../test/helpers/bounded.js';
import { checkFenceLog } from '../test/helpers/fence-log.js';
import { gone } from '../test/helpers/processes.js';
import { type Runtime, bun, fixture, node } from '../test/helpers/runtimes.js';
import { ZkEnsemble } from '../test/helpers/zookeeper.js';
import { summarize, table } from './stats.js';

const PRIMARY = fixture('fleet-primary');
/** The primaries' session timeout: the step-down deadline is half of it. */
const SESSION_MS = 2000;
const WAIT_MS = 30_000;

interface Host {
  primary: Fixture;
  workers: number;
}

class Bench {
  readonly fixtures = new Fixtures();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-fleet-'));
  #hosts = 0;

  constructor(readonly connect: string) {}

  get log(): string {
    return path.join(this.dir, 'fence.log');
  }

  async host(runtime: Runtime, workers: number, env: NodeJS.ProcessEnv = {}): Promise<Host> {
    const lockDir = path.join(this.dir, `host-${this.#hosts++}`);
    fs.mkdirSync(lockDir, { mode: 0o700 });
    const primary = this.fixtures.add(startFixture(runtime, PRIMARY, [this.connect, String(SESSION_MS), lockDir, this.log, String(workers)], env));
    await primary.next('started', () => true, 0, WAIT_MS);
    await bounded('every worker contends', contended(primary, workers), WAIT_MS);
    return { primary, workers };
  }

  async close(): Promise<void> {
    await this.fixtures.killAll();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function contended(primary: Fixture, count: number): Promise<void> {
  while (primary.count('contending') < count) await primary.next('contending', () => true, primary.events.length, WAIT_MS);
}

/** The worker whose job runs now on this host (its last run not stopped). */
function runner(primary: Fixture): FixtureEvent | undefined {
  const last = primary.events.filter((e) => e.event === 'running' || e.event === 'stopped').at(-1);
  return last?.event === 'running' ? last : undefined;
}

/** SIGKILLs the running worker `rounds` times; ms from each kill until a job runs again (the fence log checked after). */
type Path = 'host' | 'primary' | 'own';
const PATHS: Record<Path, { label: string; env: NodeJS.ProcessEnv }> = {
  host: { label: "scope 'host' (the host takeover alone)", env: { FLEET_SCOPE: 'host' } },
  primary: { label: "the primary's ballot (now)", env: {} },
  own: { label: "each worker's own session (before)", env: { OWN_SESSION: '1' } },
};

async function workerKills(connect: string, runtime: Runtime, path: Path, rounds: number): Promise<number[]> {
  const bench = new Bench(connect);
  try {
    const host = await bench.host(runtime, 3, PATHS[path].env);
    const { primary } = host;
    await primary.next('running', () => true, 0, WAIT_MS);
    const samples: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const victim = runner(primary)!;
      const from = primary.events.length;
      const contending = primary.count('contending');
      const next = primary.next('running', (e) => e['pid'] !== victim['pid'], from, WAIT_MS);
      const killedAt = performance.now();
      process.kill(victim['pid'] as number, 'SIGKILL');
      await next;
      samples.push(performance.now() - killedAt);
      // The replacement of the killed worker contends before the next round: three workers again.
      await bounded('the replacement contends', contended(primary, contending + 1), WAIT_MS);
    }
    if (path === 'host') checkFenceLog(bench.log);
    else checkFenceLog(bench.log, { by: 'fence' });
    return samples;
  } finally {
    await bench.close();
  }
}

/** SIGKILLs the leading primary `rounds` times (a new host joins each time); ms until another host's job runs. */
async function primaryKills(connect: string, rounds: number): Promise<number[]> {
  const bench = new Bench(connect);
  try {
    let leader = await bench.host(node, 2);
    await leader.primary.next('running', () => true, 0, WAIT_MS);
    let follower = await bench.host(bun, 2);
    const samples: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const next = follower.primary.next('running', () => true, follower.primary.events.length, WAIT_MS);
      const workers = (await leader.primary.next('started'))['workers'] as number[];
      const killedAt = performance.now();
      await leader.primary.kill('SIGKILL');
      await next;
      samples.push(performance.now() - killedAt);
      await gone(workers, 5000);
      leader = follower;
      follower = await bench.host(round % 2 === 0 ? node : bun, 2);
    }
    checkFenceLog(bench.log, { by: 'fence' });
    return samples;
  } finally {
    await bench.close();
  }
}

interface StopSample {
  /** The worker's abort after the primary's deadline, ms (negative: before it). */
  late: number;
  /** Another host's job started this long after the worker's abort, ms. */
  margin: number;
  transits: number[];
}

/** SIGSTOPs the leading primary `rounds` times: its worker stops by its own timer; another host then runs. */
async function primaryStops(connect: string, rounds: number): Promise<StopSample[]> {
  const samples: StopSample[] = [];
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench(connect);
    try {
      const env = { FLEET_TRACE: '1' };
      const a = await bench.host(round % 2 === 0 ? node : bun, 2, env);
      const first = await a.primary.next('running', () => true, 0, WAIT_MS);
      const b = await bench.host(round % 2 === 0 ? bun : node, 2, env);
      const from = a.primary.events.length;
      const started = b.primary.next('running', () => true, 0, WAIT_MS);
      // Renewals come every eighth of the deadline: let a few go by, traced.
      await new Promise((resolve) => setTimeout(resolve, 300));
      process.kill(a.primary.pid, 'SIGSTOP');
      try {
        const stopping = await a.primary.next('stopping', (e) => e['pid'] === first['pid'], from, WAIT_MS);
        const trace = await a.primary.next('lease-trace', (e) => e['pid'] === first['pid'], from, WAIT_MS);
        await started;
        const records = checkFenceLog(bench.log, { by: 'fence' });
        if (records.length !== 2) throw new Error(`expected 2 terms, got ${records.length}`);
        const startOfB = JSON.parse(fs.readFileSync(bench.log, 'utf8').trim().split('\n').find((line) => line.includes('"start"') && !line.includes(`"pid":${first['pid']},`))!) as { at: number };
        samples.push({
          late: (stopping['at'] as number) - (trace['deadline'] as number),
          margin: startOfB.at - (stopping['at'] as number),
          transits: trace['transits'] as number[],
        });
      } finally {
        process.kill(a.primary.pid, 'SIGCONT');
      }
    } finally {
      await bench.close();
    }
  }
  return samples;
}

export async function hostFleet(scale: number): Promise<string> {
  const ensemble = await ZkEnsemble.start({ servers: 1 });
  try {
    const connect = ensemble.connectString();
    const quick = scale < 1;
    const rows: (string | number)[][] = [];
    for (const runtime of [node, bun]) {
      let floor = 0;
      for (const path of ['host', 'primary', 'own'] as const) {
        const s = summarize(await workerKills(connect, runtime, path, path === 'own' ? (quick ? 1 : 3) : quick ? 3 : 10));
        if (path === 'host') floor = s.median;
        rows.push([`${runtime.name === 'node' ? 'Node' : 'Bun'}, ${PATHS[path].label}`, s.n, s.min, s.median, s.max, path === 'host' ? 'floor' : `${(s.median / floor).toFixed(2)}x`]);
      }
    }
    const kills = summarize(await primaryKills(connect, quick ? 1 : 3));
    const stops = await primaryStops(connect, quick ? 1 : 4);
    const late = summarize(stops.map((s) => s.late));
    const margin = summarize(stops.map((s) => s.margin));
    const transit = summarize(stops.flatMap((s) => s.transits));
    return [
      table(
        `host+cluster, leading worker SIGKILLed (3 workers, session timeout ${SESSION_MS} ms): ms until a job runs again; min, median and max of the n kills, one setup after the other (not alternating); median vs floor: ratio of the medians`,
        ['workers under one Supervisor', 'n', 'min', 'median', 'max', 'median vs floor'],
        rows,
      ),
      table(
        `host+cluster, leading primary SIGKILLed (session timeout ${SESSION_MS} ms): ms until another host's job runs; min, median and max of the n kills`,
        ['', 'n', 'min', 'median', 'max'],
        [['Node and Bun primaries in turn', kills.n, kills.min, kills.median, kills.max]],
      ),
      table(
        `host+cluster, leading primary SIGSTOPped (step-down deadline ${SESSION_MS / 2} ms after the server's last answer): min, median and max of the n stops (transit: of the n lease messages)`,
        ['ms', 'n', 'min', 'median', 'max'],
        [
          ["worker's abort after the primary's deadline (wall clock, ms steps)", late.n, late.min, late.median, late.max],
          ["lease messages' IPC transit (ms steps)", transit.n, transit.min, transit.median, transit.max],
          ["another host's job starts after the abort", margin.n, margin.min, margin.median, margin.max],
        ],
      ),
    ].join('\n');
  } finally {
    await ensemble.close();
  }
}
