/**
 * Reuseport: what a rolling restart loses under Bun, with and without
 * net.ipv4.tcp_migrate_req=1, and under Node for reference.
 *
 * Bun's node:cluster shares the port with SO_REUSEPORT: each worker has its
 * own listening socket, and when a stopping worker closes it, the connections
 * still in its accept queue are reset, unless tcp_migrate_req=1 (Linux 5.14+,
 * per network namespace) makes the kernel move them to another listener of
 * the group. Node's cluster is round-robin (the primary accepts): not affected.
 *
 * Each run is in a network namespace of its own (`unshare -n`, loopback only,
 * the sysctl set there; the host's is never changed): `bellwether start` with
 * 2 workers of a plain node:http app (test/fixtures/plain-http-app: answers
 * 200, worker.ready() once listening, no shutdown code), wrk in the same
 * namespace (nsenter), SIGHUP to the primary 2 s into the load. Two loads:
 * keep-alive (`wrk -t2 -c20 -d8s URL`) and a connection per request
 * (`-H 'Connection: close'`, which keeps the accept queues busy). Each cell
 * runs 5 times (--quick: once, 3 s with the SIGHUP at 1 s); a control without
 * SIGHUP runs twice per runtime and load (--quick: not at all).
 *
 * Needs root (unshare -n, nsenter) and wrk; skipped otherwise. Every process
 * of a run is in one process group (the primary's; wrk's) and is SIGKILLed at
 * its end, whatever happens. Run it alone on the machine: it is load.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Runtime, bun, fixture, node } from '../test/helpers/runtimes.js';
import { ProcessGroup, guardGroups } from './process-group.js';
import { table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = path.join(ROOT, 'dist/cli.js');
const APP = fixture('plain-http-app');

const WORKERS = 2;
/** Inside a fresh namespace every port is free. */
const PORT = 8080;
/** An old worker's graceful stop, then SIGKILL (--shutdown-timeout). */
const SHUTDOWN_TIMEOUT_MS = 5000;
const BOOT_TIMEOUT_MS = 20_000;
/** The rollout may run this long after the load ended. */
const ROLLOUT_GRACE_MS = SHUTDOWN_TIMEOUT_MS + 3000;
const MIGRATE = '/proc/sys/net/ipv4/tcp_migrate_req';

/** The live children of `pid`, from /proc. */
function children(pid: number): number[] {
  const pids: number[] = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        pids.push(...fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // the thread ended
      }
    }
  } catch {
    // the process ended
  }
  return pids
    .filter((child) => {
      try {
        return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${child}/status`, 'utf8'));
      } catch {
        return false;
      }
    })
    .sort((a, b) => a - b);
}

// ---- one run ----

type Load = 'keep-alive' | 'close';

interface Cell {
  runtime: Runtime;
  migrate: 0 | 1;
  load: Load;
  /** Seconds into the load; undefined: no restart (control). */
  restartAtS: number | undefined;
}

interface Outcome {
  requests: number;
  errors: [number, number, number, number];
  non2xx: number;
  /** Seconds from SIGHUP to 'rolling restart done'; undefined: not within the run; null: no restart. */
  rolloutS: number | undefined | null;
  replaced: string;
  warned: boolean;
  notes: string[];
}

const WARNING = /warning: .*tcp_migrate_req/;
const EXPECTED = [/workers ready \(primary pid/, /rolling restart done/, WARNING];

function wrkArgs(load: Load, seconds: number): string[] {
  return ['-t2', '-c20', `-d${seconds}s`, ...(load === 'close' ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${PORT}/`];
}

function parseWrk(output: string): Pick<Outcome, 'requests' | 'errors' | 'non2xx'> {
  const requests = /(\d+) requests in/.exec(output);
  if (!requests) throw new Error(`wrk: unexpected output:\n${output}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const [connect, read, write, timeout] = errors ? errors.slice(1).map(Number) : [0, 0, 0, 0];
  return {
    requests: Number(requests[1]),
    errors: [connect!, read!, write!, timeout!],
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0),
  };
}

async function runOnce(cell: Cell, seconds: number): Promise<Outcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-reuseport-'));
  // unshare and sh exec: the primary keeps the pid of the process spawned here.
  const primary = new ProcessGroup(
    'unshare',
    [
      '-n',
      'sh',
      '-c',
      `ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=${cell.migrate} && exec "$0" "$@"`,
      cell.runtime.bin,
      CLI,
      'start',
      APP,
      ...['--workers', String(WORKERS), '--shutdown-timeout', String(SHUTDOWN_TIMEOUT_MS), '--name', 'bench-reuseport'],
    ],
    { PORT: String(PORT), BELLWETHER_LOCK_DIR: dir },
  );
  let wrk: ProcessGroup | undefined;
  try {
    await primary.waitFor('"workers ready" line', (line) => line.includes(`${WORKERS} of ${WORKERS} workers ready`), BOOT_TIMEOUT_MS);
    const before = children(primary.pid);
    wrk = new ProcessGroup('nsenter', ['-t', String(primary.pid), '-n', 'wrk', ...wrkArgs(cell.load, seconds)]);
    const loadStart = performance.now();
    let rolloutS: number | undefined | null = null;
    if (cell.restartAtS !== undefined) {
      await sleep(cell.restartAtS * 1000);
      const from = primary.lines.length;
      const signalledAt = performance.now();
      process.kill(primary.pid, 'SIGHUP');
      const bound = loadStart + seconds * 1000 + ROLLOUT_GRACE_MS - signalledAt;
      rolloutS = await primary.waitFor('"rolling restart done"', (line) => line.includes('rolling restart done'), bound, from).then(
        (at) => (at - signalledAt) / 1000,
        () => undefined,
      );
    }
    const code = await Promise.race([wrk.closed, sleep(seconds * 1000 + 15_000).then(() => 'timeout' as const)]);
    if (code !== 0) throw new Error(`wrk ${code === 'timeout' ? 'did not end' : `exited with ${code}`}: ${wrk.lines.join('\n')}`);
    const after = children(primary.pid);
    const kept = after.filter((pid) => before.includes(pid));
    const replaced =
      cell.restartAtS === undefined ? '-' : after.length === WORKERS && kept.length === 0 ? 'yes' : `NO (${before.join(' ')} -> ${after.join(' ')})`;
    return {
      ...parseWrk(wrk.lines.join('\n')),
      rolloutS,
      replaced,
      warned: primary.lines.some((line) => WARNING.test(line)),
      notes: primary.lines.filter((line) => !EXPECTED.some((re) => re.test(line))),
    };
  } finally {
    await wrk?.stop(1000);
    await primary.stop(SHUTDOWN_TIMEOUT_MS + 2000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the suite ----

/** Why this cannot run here, or undefined. */
function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return 'Linux only';
  if (spawnSync('wrk', ['-v']).error) return 'wrk is not installed (Debian/Ubuntu: apt-get install wrk)';
  const probe = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1'], { encoding: 'utf8' });
  if (probe.error) return `unshare: ${probe.error.message}`;
  if (probe.status !== 0) {
    return `cannot make a network namespace with net.ipv4.tcp_migrate_req=1 (\`unshare -n\` needs root, the sysctl Linux 5.14+): ${probe.stderr.trim()}`;
  }
  if (spawnSync('nsenter', ['--version']).error) return 'nsenter (util-linux) is not installed';
  return undefined;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export async function reuseport(scale: number): Promise<string> {
  const why = cannotRun();
  if (why) return `\nreuseport: skipped, ${why}`;
  const quick = scale < 1;
  const seconds = quick ? 3 : 8;
  const restartAtS = quick ? 1 : 2;
  const runs = quick ? 1 : 5;
  const controlRuns = quick ? 0 : 2;

  // Ctrl-C or a crash must not leave primaries, workers or daemons behind.
  const stopGuarding = guardGroups();

  const cells: { cell: Cell; runs: number }[] = [];
  for (const load of ['keep-alive', 'close'] as const) {
    cells.push({ cell: { runtime: node, migrate: 0, load, restartAtS }, runs });
    for (const migrate of [0, 1] as const) cells.push({ cell: { runtime: bun, migrate, load, restartAtS }, runs });
  }
  if (controlRuns) {
    for (const load of ['keep-alive', 'close'] as const) {
      for (const runtime of [node, bun]) cells.push({ cell: { runtime, migrate: 0, load, restartAtS: undefined }, runs: controlRuns });
    }
  }

  const label = (c: Cell): string[] => [
    c.load === 'close' ? 'Connection: close' : 'keep-alive',
    c.restartAtS === undefined ? 'none (control)' : `SIGHUP at ${c.restartAtS} s`,
    c.runtime.name,
    c.runtime.name === 'node' ? `${c.migrate} (n/a)` : String(c.migrate),
  ];
  const perRun: (string | number)[][] = [];
  const summary: (string | number)[][] = [];
  const notes: string[] = [];
  try {
    for (const { cell, runs: n } of cells) {
      const outcomes: Outcome[] = [];
      for (let i = 1; i <= n; i++) {
        let r: Outcome;
        try {
          r = await runOnce(cell, seconds);
        } catch (err) {
          perRun.push([...label(cell), i, `failed: ${(err as Error).message.split('\n')[0]}`, '-', '-', '-', '-', '-']);
          notes.push(`${label(cell).join(', ')}, run ${i}: ${(err as Error).message}`);
          continue;
        }
        outcomes.push(r);
        const rollout = r.rolloutS === null ? '-' : r.rolloutS === undefined ? 'NOT within the run' : r.rolloutS.toFixed(2);
        perRun.push([...label(cell), i, r.requests, r.errors.join('/'), r.non2xx, rollout, r.replaced, r.warned ? 'yes' : 'no']);
        for (const note of new Set(r.notes)) notes.push(`${label(cell).join(', ')}, run ${i}: ${note}`);
      }
      const lost = outcomes.map((r) => r.errors.reduce((a, b) => a + b, 0) + r.non2xx);
      const done = outcomes.filter((r) => typeof r.rolloutS === 'number').length;
      summary.push([
        ...label(cell),
        `${outcomes.length}/${n}`,
        outcomes.length ? `${lost.filter((x) => x > 0).length}/${outcomes.length}` : '-',
        lost.join(', ') || '-',
        outcomes.length ? median(lost) : '-',
        outcomes.length ? median(outcomes.map((r) => r.requests)) : '-',
        cell.restartAtS === undefined ? '-' : `${done}/${outcomes.length}`,
      ]);
    }
  } finally {
    stopGuarding();
  }

  const versions = `Node ${process.version}, Bun ${spawnSync(bun.bin, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '?'}, Linux ${os.release()}, host ${MIGRATE}=${fs.existsSync(MIGRATE) ? fs.readFileSync(MIGRATE, 'utf8').trim() : 'missing'} (untouched)`;
  const load = `wrk -t2 -c20 -d${seconds}s [-H 'Connection: close'] in a fresh network namespace per run; ${WORKERS} workers (plain node:http app), --shutdown-timeout ${SHUTDOWN_TIMEOUT_MS}`;
  return [
    table(
      `Reuseport: losses during a rolling restart (SIGHUP at ${restartAtS} s): ${load}; ${versions}. lost = socket errors + non-2xx, per run`,
      ['load', 'restart', 'runtime', 'tcp_migrate_req', 'runs ok', 'runs with loss', 'lost per run', 'median lost', 'median requests', 'rollouts done'],
      summary,
    ),
    table(
      'Per run: wrk socket errors (connect/read/write/timeout), non-2xx/3xx, seconds from SIGHUP to "rolling restart done", both workers replaced, the CLI printed the tcp_migrate_req warning',
      ['load', 'restart', 'runtime', 'tcp_migrate_req', 'run', 'requests', 'socket errors c/r/w/t', 'non-2xx', 'rollout done (s)', 'replaced', 'warning'],
      perRun,
    ),
    ...(notes.length ? ['', 'Notes (unexpected primary output):', ...notes.map((note) => `- ${note}`)] : []),
  ].join('\n');
}
