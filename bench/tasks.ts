/**
 * Singleton jobs inline (`run`, on the main thread) against tasks (`task`,
 * in a worker thread), with the same CPU-bound job (contenders/task-work.ts,
 * 5 s of arithmetic in 1 ms slices):
 * 1. a worker under `bellwether start` serving HTTP while it leads and runs
 *    the job: latency and throughput under autocannon, heartbeat periods
 *    with no turn of the event loop, a kill as silent;
 * 2. scope 'cluster' (session timeout 2000 ms) with a second contender:
 *    does the leader's session expire, and do two jobs overlap (start/end
 *    records of both in one O_APPEND file)?
 * 3. a task that spins forever and ignores its signal: close() and a lost
 *    leadership until the term is over, against stopTimeout;
 * 4. RSS of idle processes with and without a task singleton.
 * Node and Bun, every process in its own process group, killed at the end.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { freePort, getText } from '../test/helpers/http.js';
import { RUNTIMES, type Runtime } from '../test/helpers/runtimes.js';
import { TcpProxy } from '../test/helpers/tcp-proxy.js';
import { ZkEnsemble, expireSession, idBuffer } from '../test/helpers/zookeeper.js';
import type { JobRecord } from './contenders/task-work.js';
import { ProcessGroup, guardGroups } from './process-group.js';
import { p99Cell, summarize, table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = path.join(ROOT, 'dist/cli.js');
const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

const JOB_MS = 5000;
const LOAD_SECONDS = 4;
const SESSION_MS = 2000;
/** Every wait below has one of these bounds. */
const BOOT_MS = 20_000;
const EVENT_MS = 15_000;

type Row = (string | number)[];

interface Stats {
  kind: 'stats';
  pid: number;
  missed: number;
  maxGap: number;
}

type Line = JobRecord | Stats;

interface Event {
  event: string;
  t: number;
  [key: string]: unknown;
}

function readRecords(file: string): Line[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Line);
}

/** The first record that matches, polling the file (a thread's writes send no event); rejects after `timeoutMs`. */
async function recorded<T extends Line>(file: string, match: (r: Line) => r is T, timeoutMs = EVENT_MS): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = readRecords(file).find(match);
    if (found) return found;
    if (performance.now() > deadline) throw new Error(`no such record in ${file} within ${timeoutMs} ms`);
    await sleep(5);
  }
}

const isRecord =
  (kind: JobRecord['kind'], pid?: number) =>
  (r: Line): r is JobRecord =>
    r.kind === kind && (pid === undefined || r.pid === pid);
const isStats = (r: Line): r is Stats => r.kind === 'stats';

function parseEvent(line: string): Event | undefined {
  return line.startsWith('{"event"') ? (JSON.parse(line) as Event) : undefined;
}

/** The first event named `name` (or any of several) of a task-singleton process from line `from` on; rejects after `timeoutMs` or if it exits. */
async function event(group: ProcessGroup, name: string | string[], timeoutMs = EVENT_MS, from = 0): Promise<Event> {
  const names = [name].flat();
  const match = (line: string): boolean => names.includes(parseEvent(line)?.event ?? '');
  await group.waitFor(`'${names.join("' or '")}' event`, match, timeoutMs, from);
  return parseEvent(group.lines.slice(from).find(match)!)!;
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bw-bench-tasks-'));
}

const ms = (value: number | undefined): string | number => (value === undefined ? '-' : Math.round(value));
const yesNo = (value: boolean): string => (value ? 'yes' : 'no');

// ---------------------------------------------------------------------------
// 1. Serving HTTP while leading

type Serving = 'none' | 'inline' | 'task';

/** ms until `request` settled, or why it failed. */
async function timed(request: Promise<unknown>): Promise<number | string> {
  const began = performance.now();
  try {
    await request;
    return Math.round(performance.now() - began);
  } catch (err) {
    return `failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}

async function serving(runtime: Runtime, job: Serving, timeout?: number): Promise<Row> {
  const dir = tempDir();
  const records = path.join(dir, 'records');
  const port = await freePort();
  const supervisor = new ProcessGroup(
    runtime.bin,
    [CLI, 'start', contender('task-app'), '--workers', '1', '--name', `bench-tasks-${port}`, '--socket', path.join(dir, 'control.sock'), ...(timeout ? ['--timeout', String(timeout)] : [])],
    { PORT: String(port), JOB: job, RECORDS: records, LOCK_DIR: dir, JOB_MS: String(JOB_MS) },
  );
  try {
    await supervisor.waitFor('"1 of 1 workers ready" line', (line) => line.includes('1 of 1 workers ready'), BOOT_MS);
    await getText(port, '/start');
    await recorded(records, isRecord('start'));
    // The load and one more request, sent as the job starts, whose wait shows a blocked loop.
    const [load, probe] = await Promise.all([
      autocannon({ url: `http://127.0.0.1:${port}/`, connections: 10, duration: LOAD_SECONDS, pipelining: 1 }),
      timed(getText(port, '/', JOB_MS * 3)),
    ]);
    const stats = await recorded(records, isStats, JOB_MS * 3);
    const killed = supervisor.lines.some((line) => /killing worker \d+ .*: silent/.test(line));
    const answered = load.requests.total;
    return [
      runtime.name,
      job === 'none' ? 'none (baseline)' : job,
      timeout === undefined ? 'default' : `--timeout ${timeout}`,
      answered,
      Math.round(answered / LOAD_SECONDS),
      answered ? load.latency.p50 : '-',
      answered ? p99Cell(answered, load.latency.p99) : '-',
      load.errors + load.timeouts,
      probe,
      stats.missed,
      ms(stats.maxGap),
      yesNo(killed),
    ];
  } finally {
    await supervisor.stop(5000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// 2. Two contenders, scope 'cluster': expiry and overlap

function singletonProcess(runtime: Runtime, env: Record<string, string>): ProcessGroup {
  return new ProcessGroup(runtime.bin, [contender('task-singleton')], env, 'pipe');
}

async function overlap(runtime: Runtime, job: 'inline' | 'task', ensemble: ZkEnsemble): Promise<Row> {
  const dir = tempDir();
  const records = path.join(dir, 'records');
  const env = {
    SCOPE: 'cluster',
    CONNECT: ensemble.connectString(),
    SESSION_MS: String(SESSION_MS),
    NAME: `overlap-${job}-${runtime.name}-${path.basename(dir)}`,
    JOB: job,
    JOB_MS: String(JOB_MS),
    RECORDS: records,
  };
  const leader = singletonProcess(runtime, env);
  let second: ProcessGroup | undefined;
  try {
    await event(leader, 'elected', BOOT_MS);
    const leaderStart = await recorded(records, isRecord('start', leader.pid));
    second = singletonProcess(runtime, env);
    await event(second, 'started', BOOT_MS);
    const leaderEnd = await recorded(records, isRecord('end', leader.pid), JOB_MS * 3);
    // Once its loop is free, a leader whose session expired hears so at its next exchange with the server.
    await event(leader, 'expired', SESSION_MS).catch(() => undefined);
    const events = leader.lines.map(parseEvent).filter((e): e is Event => e !== undefined);
    const demoted = events.find((e) => e.event === 'demoted');
    const secondStart = readRecords(records).find(isRecord('start', second.pid));
    const overlapMs = secondStart && secondStart.at < leaderEnd.at ? leaderEnd.at - secondStart.at : 0;
    return [
      runtime.name,
      job,
      yesNo(events.some((e) => e.event === 'expired')),
      demoted ? `yes (${String(demoted['reason'])})` : 'no',
      secondStart ? `yes, ${secondStart.at - leaderStart.at} ms after the leader's` : 'no',
      yesNo(overlapMs > 0),
      overlapMs,
    ];
  } finally {
    await Promise.all([leader.stop(1000), second?.stop(1000)]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// 3. A task that ignores its signal: until the term is over

type StopPath = 'close()' | 'session expiry' | 'server silent';

/** ms from the end of leadership (close() called, 'expired', 'suspended') to the term being over, and whether the task's thread still existed then. */
async function stopTime(runtime: Runtime, how: StopPath, stopTimeout: number, ensemble: ZkEnsemble): Promise<{ ms: number; threadAlive: boolean }> {
  const dir = tempDir();
  const records = path.join(dir, 'records');
  const proxy = how === 'server silent' ? new TcpProxy(ensemble.servers[0]!.clientPort) : undefined;
  await proxy?.start();
  const env: Record<string, string> = { JOB: 'forever', STOP_TIMEOUT: String(stopTimeout), RECORDS: records, NAME: `forever-${path.basename(dir)}` };
  if (how === 'close()') Object.assign(env, { SCOPE: 'host', LOCK_DIR: dir });
  else {
    // A silent server: with stepDownAfter above two thirds of the session timeout, the session's
    // 'suspended' event is the step-down itself (the election demotes on it), so its time is known here.
    Object.assign(env, { SCOPE: 'cluster', SESSION_MS: String(SESSION_MS), CONNECT: proxy ? `127.0.0.1:${proxy.port}` : ensemble.connectString() });
    if (proxy) env['STEP_DOWN_AFTER'] = String(SESSION_MS * 0.8);
  }
  const contending = singletonProcess(runtime, env);
  try {
    await event(contending, 'elected', BOOT_MS);
    await recorded(records, isRecord('start', contending.pid));
    const from = contending.lines.length;
    if (how === 'close()') {
      contending.send('close');
      const closed = await event(contending, 'closed', EVENT_MS, from);
      return { ms: Number(closed['ms']), threadAlive: closed['threadAlive'] === true };
    }
    if (proxy) proxy.mode = 'blackhole';
    else {
      const session = await event(contending, 'session');
      await expireSession(ensemble.servers[0]!.clientPort, idBuffer(String(session['sessionId'])), Buffer.from(String(session['password']), 'hex'));
    }
    // The expired session's connection is closed by the server first: 'suspended' (which demotes), then 'expired'.
    const began = await event(contending, ['suspended', 'expired'], EVENT_MS, from);
    const demoted = await event(contending, 'demoted', EVENT_MS, from);
    return { ms: demoted.t - began.t, threadAlive: demoted['threadAlive'] === true };
  } finally {
    await contending.stop(500);
    await proxy?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// 4. Memory

const MIB = 2 ** 20;

async function rssNow(group: ProcessGroup): Promise<number> {
  const from = group.lines.length;
  group.send('memory');
  return Number((await event(group, 'memory', EVENT_MS, from))['rss']);
}

/** RSS of idle processes: no singleton; a task singleton waiting; one leading while its task runs, and after it finished. */
async function memory(runtime: Runtime): Promise<{ none: number; waiting: number; during: number; after: number }> {
  const dir = tempDir();
  const records = path.join(dir, 'records');
  const env = { SCOPE: 'host', LOCK_DIR: dir, NAME: 'memory', JOB: 'task', JOB_MS: '1500', RECORDS: records };
  const bare = singletonProcess(runtime, { SCOPE: 'none' });
  const leader = singletonProcess(runtime, env);
  let waiting: ProcessGroup | undefined;
  try {
    await event(leader, 'elected', BOOT_MS);
    waiting = singletonProcess(runtime, env);
    await Promise.all([event(bare, 'started', BOOT_MS), event(waiting, 'started', BOOT_MS), recorded(records, isRecord('start', leader.pid))]);
    await sleep(300);
    const [none, waitingRss, during] = await Promise.all([rssNow(bare), rssNow(waiting), rssNow(leader)]);
    await event(leader, 'ran', EVENT_MS);
    await sleep(300);
    const after = await rssNow(leader);
    if (waiting.lines.some((line) => parseEvent(line)?.event === 'elected')) throw new Error('the waiting process was elected');
    return { none, waiting: waitingRss, during, after };
  } finally {
    await Promise.all([bare.stop(500), leader.stop(500), waiting?.stop(500)]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------

export async function tasks(scale: number): Promise<string> {
  const runs = Math.max(1, Math.round(3 * scale));
  const release = guardGroups();
  let ensemble: ZkEnsemble | undefined;
  try {
    const servingRows: Row[] = [];
    for (const runtime of RUNTIMES) {
      for (const job of ['none', 'inline', 'task'] as const) servingRows.push(await serving(runtime, job));
      servingRows.push(await serving(runtime, 'inline', 3000));
    }

    ensemble = await ZkEnsemble.start();
    const overlapRows: Row[] = [];
    for (const runtime of RUNTIMES) for (const job of ['inline', 'task'] as const) overlapRows.push(await overlap(runtime, job, ensemble));

    const stopRows: Row[] = [];
    for (const runtime of RUNTIMES) {
      for (const stopTimeout of [1000, 200]) {
        for (const how of ['close()', 'session expiry', 'server silent'] as const) {
          const samples: number[] = [];
          let alive = 0;
          for (let i = 0; i < runs; i++) {
            const { ms: took, threadAlive } = await stopTime(runtime, how, stopTimeout, ensemble);
            samples.push(took);
            if (threadAlive) alive += 1;
          }
          const s = summarize(samples);
          stopRows.push([runtime.name, stopTimeout, how, s.n, ms(s.min), ms(s.median), ms(s.max), ms(s.max - stopTimeout), alive ? `no (${alive} of ${s.n})` : 'yes']);
        }
      }
    }

    const memoryRows: Row[] = [];
    for (const runtime of RUNTIMES) {
      const rounds: Awaited<ReturnType<typeof memory>>[] = [];
      for (let i = 0; i < runs; i++) rounds.push(await memory(runtime));
      const median = (key: keyof (typeof rounds)[number]): number => summarize(rounds.map((r) => r[key])).median / MIB;
      memoryRows.push([runtime.name, rounds.length, median('none'), median('waiting'), median('after'), median('during'), summarize(rounds.map((r) => r.during - r.after)).median / MIB]);
    }

    return [
      table(
        `1. One worker under bellwether start (1000 ms heartbeats) serving GET / while it leads a host singleton whose job computes for ${JOB_MS / 1000} s; autocannon, 10 keep-alive connections, ${LOAD_SECONDS} s from the job's start. Latency in ms, p50 and p99 of the answered requests (p99 only above 100 of them); "probe": one more request sent as the job starts, answered after (ms); "missed": heartbeat periods with no turn of the worker's event loop (sum of floor(gap / 1000 ms) over a 100 ms timer's gaps); "killed": the supervisor's stderr says it killed the worker as silent`,
        ['runtime', 'job', 'supervisor', 'answered', 'req/s', 'p50', 'p99', 'errors', 'probe', 'missed', 'longest gap ms', 'killed'],
        servingRows,
      ),
      table(
        `2. scope 'cluster', session timeout ${SESSION_MS} ms: the leader runs the ${JOB_MS / 1000} s job, a second contender waits for the same singleton. Both write start/end records with their token to one O_APPEND file; "overlap": the second's job started before the leader's ended (by ms)`,
        ['runtime', 'job', 'leader session expired', 'leader demoted', 'second contender ran the job', 'two leaders overlapped', 'overlap ms'],
        overlapRows,
      ),
      table(
        `3. A task that spins forever and ignores its signal (for (;;) {}): ms from the end of leadership to the term being over, ${runs} runs each (min, median and max of those runs). close(): how long close() took (it resolves once the thread has exited), host scope; session expiry: expireSession from outside, from the session's first 'suspended' (the server closes the expired session's connection; the election demotes on it) or 'expired' event to the singleton's 'demoted'; server silent: a blackhole proxy in front of ZooKeeper, stepDownAfter ${SESSION_MS * 0.8} ms so that the step-down is the session's 'suspended' event, from it to 'demoted'. Goal: at most stopTimeout + 50 ms. "thread gone": its OS thread (/proc/self/task/<tid>) no longer existed when close() resolved or 'demoted' came`,
        ['runtime', 'stopTimeout', 'leadership ended by', 'runs', 'min', 'median', 'max', 'max - stopTimeout', 'thread gone'],
        stopRows,
      ),
      table(
        `4. RSS in MiB of idle processes, median of ${runs} rounds, each sampled 300 ms after it settled: bellwether loaded and no singleton; a task singleton (host scope) waiting for the lock; the leader after its task finished (its thread gone); the leader while its task's thread runs`,
        ['runtime', 'rounds', 'no singleton', 'task singleton, not leading', 'leading, task finished', 'leading, task running', 'extra while the thread lives'],
        memoryRows,
      ),
    ].join('\n');
  } finally {
    await ensemble?.close();
    release();
  }
}
