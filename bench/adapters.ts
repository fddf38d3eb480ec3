/**
 * Each example with the adapter and without it (BELLWETHER_ADAPTER=off),
 * 2 workers under the supervisor, a bounded autocannon load on loopback.
 * Both servers of an example run side by side, and their runs alternate
 * (ABBA), so a drift in the machine's speed weighs on both alike.
 *
 * With taskset (util-linux), the servers (the supervisor and its workers)
 * run on CPU 0 and the load generator (this process) on CPU 1, so
 * autocannon does not take the servers' CPU; without it, everything runs
 * where the kernel puts it (and the tables say so).
 *
 * Two measures: requests per second at saturation (20 connections, as fast
 * as they are answered), and the workers' CPU time per request at a fixed
 * rate, half the slower side's saturated median, the same for both sides:
 * utime + stime of each worker from /proc/<pid>/stat, before and after
 * the run, over the requests answered.
 *
 * Then what the Express router costs a request it does not answer: the same
 * Express app with and without `app.use(bellwether())`, each in a process of
 * its own (contenders/express-app), requests handed to `app(req, res)` with
 * no network, so the difference is not lost in the load generator's noise.
 * The two take turns, one batch at a time.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../test/helpers/http.js';
import { LineChild } from './lines.js';
import { statFields } from './proc.js';
import { mean, meanDifference, summarize, table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;
const WORKERS = 2;
const CONNECTIONS = 20;
const SERVER_CPU = 0;
const LOAD_CPU = 1;

/** taskset runs and there are two CPUs to pin to. */
function canPin(): boolean {
  if (os.availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** This process's CPU affinity, as taskset prints it (a hex mask). */
function affinity(): string {
  return execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' }).trim().split(/\s+/).at(-1)!;
}

/** Sets this process's CPU affinity, every thread of it (-a); new threads take their creator's. */
function setAffinity(args: string[]): void {
  execFileSync('taskset', ['-a', '-p', ...args, String(process.pid)], { stdio: 'ignore' });
}

const CLOCK_TICKS_PER_SECOND = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process (all its threads, the ended ones too), in clock ticks. */
function cpuTicks(pid: number): number {
  // From the state on (field 3): utime is field 14, stime 15.
  const fields = statFields(pid);
  if (!fields) throw new Error(`process ${pid} is gone`);
  return Number(fields[11]) + Number(fields[12]);
}

/** Busy and total clock ticks of one CPU so far, from /proc/stat (busy: all but idle and iowait). */
function cpuTime(cpu: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `))!;
  const ticks = line.split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: total - ticks[3]! - ticks[4]!, total };
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

/** The supervisor's children (its workers), sorted. */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`)
    .flatMap((task) => readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/))
    .filter(Boolean)
    .map(Number)
    .sort((a, b) => a - b);
}

interface Server {
  label: string;
  port: number;
  primary: LineChild;
}

async function startServer(example: string, adapter: boolean, pinned: boolean): Promise<Server> {
  const port = await freePort();
  const label = `${example} (adapter ${adapter ? 'on' : 'off'})`;
  const cli = [path.join(ROOT, 'dist/cli.js'), 'start', path.join(ROOT, `examples/${example}/server.js`), '--workers', String(WORKERS), '--shutdown-timeout', '3000', '--name', `bench-adapters-${port}`];
  const [command, args] = pinned ? ['taskset', ['-c', String(SERVER_CPU), process.execPath, ...cli]] : [process.execPath, cli];
  // taskset execs node: the child's pid is the supervisor's.
  const primary = new LineChild(command, args, { PORT: String(port), XDG_RUNTIME_DIR: os.tmpdir(), BELLWETHER_ADAPTER: adapter ? 'on' : 'off' });
  const server = { label, port, primary };
  try {
    // Ready: the first successful request, and every worker forked.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false);
      if (ok && childrenOf(primary.child.pid!).length === WORKERS) break;
      if (Date.now() > deadline) throw new Error(`${label} did not answer within 15 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return server;
  } catch (err) {
    await stopServer(server);
    throw err;
  }
}

async function stopServer(server: Server): Promise<void> {
  server.primary.child.kill('SIGTERM');
  await Promise.race([server.primary.exited, new Promise((r) => setTimeout(r, 5000))]);
  await server.primary.kill();
}

interface Run {
  /** Requests answered per second of the run. */
  rps: number;
  answered: number;
  /** The workers' CPU time over the requests answered, µs. */
  cpuPerRequestUs: number;
  /** The workers' CPU time over the run's wall-clock time, % of one CPU. */
  workersCpuPercent: number;
  /** The other side's workers' CPU time over the run's wall-clock time, idle but for their own timers and tasks: ms per s. */
  idleCpuMsPerS: number;
  /** How busy the servers' CPU was over the run (whoever ran on it), %. */
  serverCpuBusyPercent: number;
  /** This process's CPU time (the load generator's) over the run's wall-clock time, % of one CPU. */
  loadCpuPercent: number;
}

/**
 * One bounded autocannon run on `server`, while `idle` (the other side) has no load;
 * `rate`: a fixed number of requests per second from all connections.
 */
async function run(server: Server, idle: Server, seconds: number, rate?: number): Promise<Run> {
  const workers = childrenOf(server.primary.child.pid!);
  if (workers.length !== WORKERS) throw new Error(`${server.label}: ${workers.length} workers instead of ${WORKERS}`);
  const idleWorkers = childrenOf(idle.primary.child.pid!);
  const before = workers.map(cpuTicks);
  const idleBefore = idleWorkers.map(cpuTicks);
  const serverCpuBefore = cpuTime(SERVER_CPU);
  const loadBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const result = await autocannon({ url: `http://127.0.0.1:${server.port}/`, connections: CONNECTIONS, duration: seconds, pipelining: 1, ...(rate ? { overallRate: rate } : {}) });
  const wallUs = Number(process.hrtime.bigint() - started) / 1000;
  const load = process.cpuUsage(loadBefore);
  const after = workers.map(cpuTicks);
  const idleAfter = idleWorkers.map(cpuTicks);
  const serverCpu = cpuTime(SERVER_CPU);
  if (result.non2xx || result.errors || result.timeouts) throw new Error(`${server.label}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`);
  if (childrenOf(server.primary.child.pid!).join() !== workers.join()) throw new Error(`${server.label}: a worker was replaced during the run`);
  const answered = result['2xx'];
  const ticksToUs = (from: number[], to: number[]): number => ((sum(to) - sum(from)) * 1e6) / CLOCK_TICKS_PER_SECOND;
  const cpuUs = ticksToUs(before, after);
  return {
    rps: answered / result.duration,
    answered,
    cpuPerRequestUs: cpuUs / answered,
    workersCpuPercent: (cpuUs / wallUs) * 100,
    idleCpuMsPerS: (ticksToUs(idleBefore, idleAfter) / wallUs) * 1000,
    serverCpuBusyPercent: ((serverCpu.busy - serverCpuBefore.busy) / (serverCpu.total - serverCpuBefore.total)) * 100,
    loadCpuPercent: ((load.user + load.system) / wallUs) * 100,
  };
}

/** Runs `measure` on the two sides in ABBA order, `runs` times each. */
async function alternate<T>(runs: number, measure: (side: 0 | 1) => Promise<T>): Promise<[T[], T[]]> {
  const results: [T[], T[]] = [[], []];
  for (let round = 0; round < runs; round++) {
    const order: (0 | 1)[] = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const side of order) results[side].push(await measure(side));
  }
  return results;
}

interface ExampleResult {
  example: string;
  saturated: [Run[], Run[]];
  rate: number;
  fixed: [Run[], Run[]];
}

async function measureExample(example: string, pinned: boolean, runs: number, seconds: number): Promise<ExampleResult> {
  const servers: Server[] = [];
  try {
    servers.push(await startServer(example, false, pinned));
    servers.push(await startServer(example, true, pinned));
    const onSide = (side: 0 | 1, runSeconds: number, rate?: number): Promise<Run> => run(servers[side]!, servers[1 - side]!, runSeconds, rate);
    // Warm-up (JIT, connections' first requests): one unrecorded run each.
    await onSide(0, 1);
    await onSide(1, 1);
    const saturated = await alternate(runs, (side) => onSide(side, seconds));
    const slower = Math.min(...saturated.map((side) => summarize(side.map((r) => r.rps)).median));
    const rate = Math.max(100, Math.round(slower / 2 / 100) * 100);
    const fixed = await alternate(runs, (side) => onSide(side, seconds, rate));
    return { example, saturated, rate, fixed };
  } finally {
    for (const server of servers) await stopServer(server);
  }
}

/** "with - without" of the means, its 95% interval, and the means' ratio. */
function difference(without: number[], withAdapter: number[], digits: number): string {
  const d = meanDifference(withAdapter, without);
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
  return `${signed(d.difference)} [${signed(d.low)}, ${signed(d.high)}] (${((mean(withAdapter) / mean(without) - 1) * 100).toFixed(1)}%)`;
}

function throughputTables(results: ExampleResult[], pinned: boolean, seconds: number): string {
  const where = pinned
    ? `servers (supervisor and workers) on CPU ${SERVER_CPU}, autocannon on CPU ${LOAD_CPU} (taskset)`
    : 'not pinned (no taskset or a single CPU): autocannon shares the CPUs with the servers';
  const sides = ['without the adapter', 'with the adapter'];
  const saturatedRows = results.flatMap(({ example, saturated }) =>
    saturated.map((side, i) => {
      const rps = side.map((r) => r.rps);
      const s = summarize(rps);
      return [example, sides[i]!, s.n, mean(rps).toFixed(0), s.median.toFixed(0), s.min.toFixed(0), s.max.toFixed(0), summarize(side.map((r) => r.workersCpuPercent)).median.toFixed(0), summarize(side.map((r) => r.serverCpuBusyPercent)).median.toFixed(0), summarize(side.map((r) => r.loadCpuPercent)).median.toFixed(0), i === 1 ? difference(saturated[0].map((r) => r.rps), rps, 0) : ''];
    }),
  );
  const fixedRows = results.flatMap(({ example, rate, fixed }) =>
    fixed.map((side, i) => {
      const us = side.map((r) => r.cpuPerRequestUs);
      const s = summarize(us);
      // Measured while the other side ran: its runs are this side's idle times.
      const idle = summarize(fixed[1 - i]!.map((r) => r.idleCpuMsPerS)).median;
      return [example, sides[i]!, rate, s.n, mean(side.map((r) => r.answered)).toFixed(0), mean(us).toFixed(1), s.median.toFixed(1), s.min.toFixed(1), s.max.toFixed(1), idle.toFixed(1), i === 1 ? difference(fixed[0].map((r) => r.cpuPerRequestUs), us, 1) : ''];
    }),
  );
  return (
    table(
      `Requests per second at saturation, GET /, ${WORKERS} workers under the supervisor, autocannon ${CONNECTIONS} connections on loopback, n runs of ${seconds} s per side in ABBA order; ${where}`,
      ['example', 'side', 'n', 'mean req/s', 'median req/s', 'min', 'max', 'workers CPU % (median)', `CPU ${SERVER_CPU} busy % (median)`, 'autocannon CPU % (median)', 'with - without, means [95% CI] (%)'],
      saturatedRows,
    ) +
    '\n' +
    table(
      `Workers' CPU time per request (utime + stime from /proc/<pid>/stat, all ${WORKERS} workers, over the requests answered), µs, at a fixed rate (autocannon overallRate, half the slower side's median at saturation), n runs of ${seconds} s per side in ABBA order; ${where}`,
      ['example', 'side', 'rate (req/s)', 'n', 'requests per run (mean)', 'mean µs', 'median µs', 'min', 'max', 'idle CPU ms/s (median)', 'with - without, means [95% CI] (%)'],
      fixedRows,
    )
  );
}

async function expressRouterCost(scale: number): Promise<string> {
  // Short batches, many rounds: the two batches of a round run close together, so a burst of other load weighs on both.
  const count = 1000;
  const rounds = Math.max(10, Math.round(200 * scale));
  const children: LineChild[] = [];
  const start = async (variant: 'with' | 'without'): Promise<LineChild> => {
    const app = new LineChild(process.execPath, [contender('express-app'), variant]);
    children.push(app);
    await app.until('ready', 15_000);
    return app;
  };
  /** Mean wall-clock ns per request of one batch. */
  const batch = async (app: LineChild): Promise<number> => {
    app.child.stdin!.write(`${count}\n`);
    const line = await app.line(120_000);
    const ns = Number(line);
    if (!Number.isFinite(ns)) throw new Error(`express-app: ${JSON.stringify(line)} instead of ns per request`);
    return ns;
  };
  try {
    const apps = { without: await start('without'), with: await start('with') };
    for (let warmup = 0; warmup < 10; warmup++) {
      await batch(apps.without);
      await batch(apps.with);
    }
    const without: number[] = [];
    const withRouter: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // ABBA order: a drift in the machine's speed weighs on both alike.
      if (round % 2 === 0) {
        without.push(await batch(apps.without));
        withRouter.push(await batch(apps.with));
      } else {
        withRouter.push(await batch(apps.with));
        without.push(await batch(apps.without));
      }
    }
    const a = summarize(without);
    const b = summarize(withRouter);
    const signed = (ns: number): string => `${ns >= 0 ? '+' : ''}${ns.toFixed(0)}`;
    /** The median over the rounds of `of(without, with)` of each round's pair. */
    const paired = (of: (off: number, on: number) => number): number => summarize(without.map((off, round) => of(off, withRouter[round]!))).median;
    return table(
      `Express ${expressVersion()}, no network: GET / (the app's own route) through app(req, res), one process per app, ${rounds} alternating rounds of ${count} requests, ns per request`,
      ['rounds', 'without the router', 'with app.use(bellwether())', 'added by the router', 'ratio'],
      [
        ['median (added, ratio: of the pairs)', a.median.toFixed(0), b.median.toFixed(0), signed(paired((off, on) => on - off)), paired((off, on) => on / off).toFixed(3)],
        // The least disturbed by other load on the machine.
        ['fastest', a.min.toFixed(0), b.min.toFixed(0), signed(b.min - a.min), (b.min / a.min).toFixed(3)],
      ],
    );
  } finally {
    for (const app of children) {
      app.child.stdin!.end();
      await Promise.race([app.exited, new Promise((r) => setTimeout(r, 5000))]);
      await app.kill();
    }
  }
}

function expressVersion(): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules/express/package.json'), 'utf8')) as { version: string }).version;
}

export async function adapters(scale: number): Promise<string> {
  // Short runs, many of them: the suite's full run stays within about 4 minutes.
  const seconds = scale < 1 ? 1 : 2;
  const runs = Math.max(2, Math.round(10 * scale));
  const pinned = canPin();
  const results: ExampleResult[] = [];
  const mask = pinned ? affinity() : undefined;
  if (pinned) setAffinity(['-c', String(LOAD_CPU)]);
  try {
    for (const example of ['express', 'fastify']) results.push(await measureExample(example, pinned, runs, seconds));
  } finally {
    if (mask) setAffinity([mask]);
  }
  return throughputTables(results, pinned, seconds) + '\n' + (await expressRouterCost(scale));
}
