/**
 * Restarts: one rolling restart of 2 workers under keep-alive load, side by
 * side: `bellwether start` + SIGHUP, PM2 cluster mode + `pm2 reload`, and a
 * plain node:cluster primary + SIGHUP (bench/contenders/rolling-cluster-primary).
 * The app is the same server in all three (contenders/keepalive-server);
 * only PM2's copy adds what PM2's docs ask for (ready message, SIGINT handler).
 * Every old worker gets DRAIN_TIMEOUT_MS to stop before it is SIGKILLed.
 *
 * Load: wrk (Debian package `wrk`), 20 keep-alive connections, 8 s; the
 * restart begins 2 s into the run (--quick: 3 s, at 1 s). wrk reports
 * latency for the whole run only, where the rollout is a small part: its
 * max shows a stall, its p99 mostly not. For latency during the rollout itself a probe runs beside it:
 * one more keep-alive connection from this process, a GET every 10 ms, and
 * the requests sent between the signal and the end of the rollout give the
 * rollout's max, and its p99 (nearest rank) above 100 requests.
 *
 * One contender at a time, 127.0.0.1 only, free ports. Each contender runs
 * in its own process group (PM2: its daemon's group) and is killed whatever
 * happens. PM2 is not a dependency: the first run installs pm2@latest with
 * npm into <tmpdir>/bellwether-bench-pm2, with a private PM2_HOME per run.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../test/helpers/http.js';
import { ProcessGroup, cleanups, guardGroups, killGroup } from './process-group.js';
import { statFields } from './proc.js';
import { p99Cell, summarize, table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

const WORKERS = 2;
const WRK_THREADS = 2;
const WRK_CONNECTIONS = 20;
/** An old worker's graceful stop, then SIGKILL: bellwether's --shutdown-timeout, PM2's kill_timeout, the plain primary's timer. */
const DRAIN_TIMEOUT_MS = 2000;
/** Bound on the workers serving: at start, and for each replacement. */
const BOOT_TIMEOUT_MS = 10_000;
/** The rollout may run this long after the load ended; then the run ends anyway. */
const ROLLOUT_GRACE_MS = 4000;
const PROBE_INTERVAL_MS = 10;
const PM2_DIR = path.join(os.tmpdir(), 'bellwether-bench-pm2');
const PM2_APP = 'bench-restarts';

// ---- processes ----

interface Ran {
  code: number | null;
  output: string;
}

/** Runs a command to its end, SIGKILLed after `timeoutMs`; stdout and stderr together. */
function run(command: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, output: `${output}${err.message}` });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A process by pid and start time, so a reused pid is not taken for it. */
interface Proc {
  pid: number;
  start: string;
}

function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/**
 * A primary's workers: its live children that run `script`. Not every child:
 * PM2's daemon also runs short-lived commands (df and the like, for its host metrics).
 */
function workersOf(primary: number, script: string): Proc[] {
  const workers: Proc[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const fields = statFields(pid);
    if (fields && Number(fields[1]) === primary && fields[0] !== 'Z' && commandLine(pid).includes(script)) workers.push({ pid, start: fields[19]! });
  }
  return workers.sort((a, b) => a.pid - b.pid);
}

/** Still the same process, and not a zombie. */
function alive(p: Proc): boolean {
  const fields = statFields(p.pid);
  return fields !== undefined && fields[19] === p.start && fields[0] !== 'Z';
}

// ---- contenders ----

interface Running {
  /** The workers serving now. */
  workers(): Proc[];
  /** Starts one rolling restart; resolves once the contender says it is done (rejects after `timeoutMs`). */
  restart(timeoutMs: number): Promise<void>;
  /** What the contender said about the run beyond the expected: forced kills, errors. */
  notes(): string[];
  stop(): Promise<void>;
}

interface Contender {
  label: string;
  /** Resolves once WORKERS workers serve on `port`. */
  start(port: number): Promise<Running>;
}

/** Stops what started when starting fails midway. */
async function startedOrStopped(running: Running, ready: Promise<unknown>): Promise<Running> {
  try {
    await ready;
    return running;
  } catch (err) {
    await running.stop();
    throw err;
  }
}

const bellwether: Contender = {
  label: 'bellwether start + SIGHUP',
  start(port) {
    // Its own control socket: the default one is per name in the shared lock directory.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-restarts-'));
    const primary = new ProcessGroup(
      process.execPath,
      [
        path.join(ROOT, 'dist/cli.js'),
        'start',
        contender('keepalive-app-bellwether'),
        ...['--workers', String(WORKERS), '--shutdown-timeout', String(DRAIN_TIMEOUT_MS), '--boot-timeout', String(BOOT_TIMEOUT_MS)],
        ...['--name', `bench-restarts-${port}`, '--socket', path.join(dir, 'control.sock')],
      ],
      { PORT: String(port) },
    );
    const expected = /workers ready \(primary pid|rolling restart done/;
    return startedOrStopped(
      {
        // The supervisor forks its bootstrap, which loads the app.
        workers: () => workersOf(primary.pid, path.join(ROOT, 'dist/worker/bootstrap.js')),
        async restart(timeoutMs) {
          const from = primary.lines.length;
          process.kill(primary.pid, 'SIGHUP');
          await primary.waitFor('"rolling restart done" line', (line) => line.includes('rolling restart done'), timeoutMs, from);
        },
        notes: () => primary.lines.filter((line) => !expected.test(line)),
        async stop() {
          await primary.stop(DRAIN_TIMEOUT_MS + 3000);
          fs.rmSync(dir, { recursive: true, force: true });
        },
      },
      primary.waitFor('"workers ready" line', (line) => line.includes(`${WORKERS} of ${WORKERS} workers ready`), BOOT_TIMEOUT_MS),
    );
  },
};

const plainCluster: Contender = {
  label: 'plain node:cluster + SIGHUP',
  start(port) {
    const primary = new ProcessGroup(process.execPath, [contender('rolling-cluster-primary'), String(WORKERS), String(DRAIN_TIMEOUT_MS)], { PORT: String(port) });
    const event = (name: string) => (line: string) => line.includes(`"event":"${name}"`);
    return startedOrStopped(
      {
        workers: () => workersOf(primary.pid, contender('keepalive-app-plain')),
        async restart(timeoutMs) {
          const from = primary.lines.length;
          process.kill(primary.pid, 'SIGHUP');
          await primary.waitFor('"restarted" event', event('restarted'), timeoutMs, from);
        },
        notes() {
          const killed = primary.lines.filter(event('killed')).length;
          const other = primary.lines.filter((line) => !/"event":"(listening|exit|restarted|killed)"/.test(line));
          return [...(killed ? [`${killed} old worker(s) SIGKILLed after the ${DRAIN_TIMEOUT_MS} ms timeout`] : []), ...other];
        },
        stop: () => primary.stop(3000),
      },
      primary.waitFor(`${WORKERS} "listening" events`, event('listening'), BOOT_TIMEOUT_MS, 0, WORKERS),
    );
  },
};

/** pm2's CLI, installed on first use outside the repository; a message to print if that fails. */
async function installPm2(): Promise<string> {
  const bin = path.join(PM2_DIR, 'node_modules/pm2/bin/pm2');
  if (fs.existsSync(bin)) return bin;
  console.error(`restarts: installing pm2@latest into ${PM2_DIR} (once)`);
  const npm = await run('npm', ['install', '--prefix', PM2_DIR, '--no-audit', '--no-fund', '--loglevel=error', 'pm2@latest'], 300_000);
  if (npm.code !== 0 || !fs.existsSync(bin)) throw new Error(`npm install pm2 failed (${npm.code}): ${npm.output.trim().slice(-500)}`);
  return bin;
}

function pm2Version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(PM2_DIR, 'node_modules/pm2/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

const pm2: Contender = {
  label: 'PM2 cluster mode + pm2 reload',
  async start(port) {
    const bin = await installPm2();
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-pm2-home-'));
    const pm2Cli = (args: string[], timeoutMs: number): Promise<Ran> => run(process.execPath, [bin, ...args], timeoutMs, { PM2_HOME: home });
    const ecosystem = path.join(home, 'ecosystem.json');
    // PM2's graceful setup: reload waits for process.send('ready') (up to listen_timeout),
    // then stops the old worker with SIGINT and SIGKILL after kill_timeout.
    const app = {
      name: PM2_APP,
      script: contender('keepalive-app-pm2'),
      exec_mode: 'cluster',
      instances: WORKERS,
      wait_ready: true,
      listen_timeout: BOOT_TIMEOUT_MS,
      kill_timeout: DRAIN_TIMEOUT_MS,
      env: { PORT: String(port) },
    };
    fs.writeFileSync(ecosystem, JSON.stringify({ apps: [app] }));
    // The daemon detaches itself: it leads its own process group, with the workers in it.
    const daemonPid = (): number | undefined => {
      try {
        const pid = Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8').trim());
        return Number.isInteger(pid) && pid > 0 ? pid : undefined;
      } catch {
        return undefined; // no daemon (yet)
      }
    };
    const cleanup = (): void => {
      spawnSync(process.execPath, [bin, 'kill'], { env: { ...process.env, PM2_HOME: home }, stdio: 'ignore', timeout: 10_000 });
      const daemon = daemonPid();
      if (daemon) killGroup(daemon);
      fs.rmSync(home, { recursive: true, force: true });
    };
    cleanups.add(cleanup);
    const log = (): string[] => {
      try {
        return fs.readFileSync(path.join(home, 'pm2.log'), 'utf8').split('\n');
      } catch {
        return [];
      }
    };
    const running: Running = {
      workers: () => {
        const daemon = daemonPid();
        return daemon ? workersOf(daemon, app.script) : [];
      },
      async restart(timeoutMs) {
        const reload = await pm2Cli(['reload', PM2_APP], timeoutMs);
        if (reload.code !== 0) throw new Error(`pm2 reload failed (exit ${reload.code}): ${reload.output.trim().slice(-500)}`);
      },
      notes() {
        const lines = log();
        const killed = lines.filter((line) => line.includes('sending SIGKILL')).length;
        const trouble = lines.filter((line) => /error|fail|could not|errored/i.test(line));
        return [...(killed ? [`${killed} worker(s) SIGKILLed after kill_timeout (pm2.log)`] : []), ...trouble.map((line) => `pm2.log: ${line}`)];
      },
      async stop() {
        const killed = await pm2Cli(['kill'], 10_000);
        if (killed.code !== 0) console.error(`restarts: pm2 kill failed (exit ${killed.code}): ${killed.output.trim().slice(-300)}`);
        cleanups.delete(cleanup);
        cleanup();
      },
    };
    const ready = (async () => {
      const started = await pm2Cli(['start', ecosystem], BOOT_TIMEOUT_MS + 10_000);
      if (started.code !== 0) throw new Error(`pm2 start failed (exit ${started.code}): ${started.output.trim().slice(-500)}`);
      // With wait_ready, `pm2 start` returns once the workers sent 'ready'.
      const workers = running.workers();
      if (workers.length !== WORKERS) throw new Error(`pm2 start: ${workers.length} workers, not ${WORKERS}`);
    })();
    return startedOrStopped(running, ready);
  },
};

// ---- load ----

/** A GET with its own bound: true for a 200 answer. */
function get(port: number, agent: http.Agent | false): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 5000 }, (response) => {
      response.on('error', () => resolve(false));
      response.on('end', () => resolve(response.statusCode === 200));
      response.resume();
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', () => resolve(false));
  });
}

async function untilServes(port: number): Promise<void> {
  const deadline = performance.now() + BOOT_TIMEOUT_MS;
  while (!(await get(port, false))) {
    if (performance.now() > deadline) throw new Error(`no 200 on 127.0.0.1:${port} within ${BOOT_TIMEOUT_MS} ms`);
    await sleep(50);
  }
}

/** One keep-alive connection, one GET at a time every PROBE_INTERVAL_MS: when each was sent, how long it took, whether it got a 200. */
class Probe {
  readonly samples: { sentAt: number; ms: number; ok: boolean }[] = [];
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(port: number) {
    this.#done = this.#loop(port);
  }

  async #loop(port: number): Promise<void> {
    while (!this.#stopped) {
      const sentAt = performance.now();
      const ok = await get(port, this.#agent);
      this.samples.push({ sentAt, ms: performance.now() - sentAt, ok });
      await sleep(PROBE_INTERVAL_MS);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
    this.#agent.destroy();
  }
}

interface WrkResult {
  requests: number;
  /** connect/read/write/timeout, as wrk counts them. */
  socketErrors: [number, number, number, number];
  /** wrk's "Non-2xx or 3xx responses" (status >= 400). */
  badStatus: number;
  p99Ms: number;
  maxMs: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function wrkMs(text: string | undefined): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text ?? '');
  if (!match) throw new Error(`wrk: unreadable time ${JSON.stringify(text)}`);
  return Number(match[1]) * UNIT_MS[match[2]!]!;
}

function parseWrk(output: string): WrkResult {
  const requests = /(\d+) requests in/.exec(output);
  const latency = /^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(output);
  const p99 = /^\s*99%\s+(\S+)/m.exec(output);
  if (!requests || !latency || !p99) throw new Error(`wrk: unexpected output:\n${output}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const [connect, read, write, timeout] = errors ? errors.slice(1).map(Number) : [0, 0, 0, 0];
  return {
    requests: Number(requests[1]),
    socketErrors: [connect!, read!, write!, timeout!],
    badStatus: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0),
    p99Ms: wrkMs(p99[1]),
    maxMs: wrkMs(latency[3]),
  };
}

// ---- one run ----

interface Outcome {
  wrk: WrkResult;
  /** Seconds from the signal (or `pm2 reload`) to the contender saying the rollout is done; undefined if it did not. */
  reportedS: number | undefined;
  /** Per old worker, seconds from the signal to its exit; undefined if it outlived the run. */
  oldExitS: (number | undefined)[];
  /** The probe's requests sent from the signal to the end of the rollout. */
  probe: { n: number; p99Ms: number; maxMs: number; failed: number };
  before: number[];
  after: number[];
  /** The rollout ended after the load did. */
  outlastedLoad: boolean;
  notes: string[];
}

async function measure(kind: Contender, seconds: number, restartAtS: number): Promise<Outcome> {
  const port = await freePort();
  const running = await kind.start(port);
  try {
    await untilServes(port);
    const before = running.workers();
    if (before.length !== WORKERS) throw new Error(`${before.length} workers before the restart, not ${WORKERS}`);
    const probe = new Probe(port);
    const loadStart = performance.now();
    const url = `http://127.0.0.1:${port}/`;
    const load = run('wrk', [`-t${WRK_THREADS}`, `-c${WRK_CONNECTIONS}`, `-d${seconds}s`, '--latency', url], seconds * 1000 + 10_000);
    await sleep(restartAtS * 1000);

    const signalledAt = performance.now();
    const rolloutBoundMs = (seconds - restartAtS) * 1000 + ROLLOUT_GRACE_MS;
    let reportedAt: number | undefined;
    let restartFailed: Error | undefined;
    const reported = running.restart(rolloutBoundMs).then(
      () => void (reportedAt = performance.now()),
      (err: Error) => void (restartFailed = err),
    );
    // Each old worker's exit as /proc shows it: the same clock for every contender.
    const exitedAt: (number | undefined)[] = before.map(() => undefined);
    while (performance.now() < signalledAt + rolloutBoundMs) {
      before.forEach((p, i) => {
        if (exitedAt[i] === undefined && !alive(p)) exitedAt[i] = performance.now();
      });
      if (exitedAt.every((at) => at !== undefined) && (reportedAt !== undefined || restartFailed)) break;
      await sleep(10);
    }
    await reported;
    const wrk = await load;
    await probe.stop();
    const loadEnd = loadStart + seconds * 1000;
    const after = running.workers();

    const rolloutEnd = Math.max(reportedAt ?? loadEnd, ...exitedAt.map((at) => at ?? loadEnd));
    const during = probe.samples.filter((s) => s.sentAt >= signalledAt && s.sentAt <= rolloutEnd);
    const latencies = summarize(during.map((s) => s.ms));
    if (wrk.code !== 0) throw new Error(`wrk failed (exit ${wrk.code}): ${wrk.output}`);
    return {
      wrk: parseWrk(wrk.output),
      reportedS: reportedAt === undefined ? undefined : (reportedAt - signalledAt) / 1000,
      oldExitS: exitedAt.map((at) => (at === undefined ? undefined : (at - signalledAt) / 1000)),
      probe: { n: during.length, p99Ms: latencies.p99, maxMs: latencies.max, failed: during.filter((s) => !s.ok).length },
      before: before.map((p) => p.pid),
      after: after.map((p) => p.pid),
      outlastedLoad: rolloutEnd > loadEnd,
      notes: [...(restartFailed ? [`restart: ${restartFailed.message}`] : []), ...running.notes()],
    };
  } finally {
    await running.stop();
  }
}

function bellwetherVersion(): string {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const git = (...args: string[]): string => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = git('rev-parse', '--short', 'HEAD');
  const dirty = git('status', '--porcelain', '--', 'src').length > 0;
  return `bellwether ${version}${commit ? ` (${commit}${dirty ? ', uncommitted changes in src/' : ''})` : ''}`;
}

export async function restarts(scale: number): Promise<string> {
  if (spawnSync('wrk', ['-v']).error) {
    return '\nrestarts: skipped, wrk is not installed (Debian/Ubuntu: apt-get install wrk; elsewhere https://github.com/wg/wrk)';
  }
  const quick = scale < 1;
  const seconds = quick ? 3 : 8;
  const restartAtS = quick ? 1 : 2;
  // Ctrl-C or a crash must not leave primaries, workers or daemons behind.
  const stopGuarding = guardGroups();

  const rows: (string | number)[][] = [];
  const rollout: (string | number)[][] = [];
  const notes: string[] = [];
  try {
    for (const kind of [bellwether, pm2, plainCluster]) {
      let r: Outcome;
      try {
        r = await measure(kind, seconds, restartAtS);
      } catch (err) {
        const message = (err as Error).message.split('\n')[0]!;
        rows.push([kind.label, `failed: ${message}`, '-', '-', '-', '-']);
        rollout.push([kind.label, '-', '-', '-', '-', '-', '-', '-']);
        notes.push(`${kind.label}: ${(err as Error).message}`);
        continue;
      }
      const secondsText = (s: number | undefined): string => (s === undefined ? 'not within the run' : s.toFixed(2));
      const kept = r.after.filter((pid) => r.before.includes(pid));
      const replaced = r.after.length === WORKERS && kept.length === 0 ? 'yes' : `NO (${kept.length ? `kept ${kept.join(', ')}` : `${r.after.length} workers after`})`;
      rows.push([kind.label, r.wrk.requests, r.wrk.socketErrors.join('/'), r.wrk.badStatus, r.wrk.p99Ms.toFixed(2), r.wrk.maxMs.toFixed(2)]);
      rollout.push([
        kind.label + (r.outlastedLoad ? ' (rollout outlasted the load)' : ''),
        secondsText(r.reportedS),
        r.oldExitS.map(secondsText).join(', '),
        r.probe.n,
        r.probe.n ? p99Cell(r.probe.n, Number(r.probe.p99Ms.toFixed(2))) : '-',
        r.probe.n ? r.probe.maxMs.toFixed(2) : '-',
        r.probe.failed,
        `${r.before.join(' ')} -> ${r.after.join(' ')}: ${replaced}`,
      ]);
      for (const note of new Set(r.notes)) notes.push(`${kind.label}: ${note}`);
    }
  } finally {
    stopGuarding();
  }

  const load = `wrk -t${WRK_THREADS} -c${WRK_CONNECTIONS} -d${seconds}s, keep-alive, rolling restart at ${restartAtS} s`;
  return [
    table(
      `Rolling restart of ${WORKERS} workers under load: ${load}; ${bellwetherVersion()}, PM2 ${pm2Version()}; latency is wrk's over the whole run (ms; n = the requests)`,
      ['contender', 'requests', 'socket errors connect/read/write/timeout', 'non-2xx/3xx', 'p99, whole run', 'max, whole run'],
      rows,
    ),
    table(
      `The rollout: seconds from the signal (PM2: from running \`pm2 reload\`, its CLI's start-up included); probe = 1 extra keep-alive connection, a GET every ${PROBE_INTERVAL_MS} ms, requests sent during the rollout (ms; their max, and their p99 only above 100 requests); old workers are SIGKILLed after ${DRAIN_TIMEOUT_MS} ms`,
      ['contender', 'reported done', 'old workers exited at', 'probe requests', 'probe p99', 'probe max', 'probe failures', 'worker pids before -> after: all replaced'],
      rollout,
    ),
    ...(notes.length ? ['', 'Notes:', ...notes.map((note) => `- ${note}`)] : []),
  ].join('\n');
}
