/**
 * The `logger` option: pino (a dev dependency) writes to memory or to a
 * fixture's stdout, and each state change is found there with its `event`,
 * level and fields: a session's connected, suspended, reconnected, expired
 * and closed; a Candidate's elected, step-down and demoted with its reason;
 * an Observer's leader and leader-gone; a singleton's elected and demoted; a
 * Supervisor's worker exits, restarts, kills, crash loop and rolling
 * restarts; `bellwether start --log-format json` beside the default text;
 * the adapters' loggers. Nothing is logged per request.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { Worker } from 'node:cluster';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { BellwetherError, Candidate, ErrorCodes, type Logger, Observer, StatusBoard, Supervisor, ZkSession, singleton } from 'bellwether';
import { bellwether as expressRouter } from 'bellwether/express';
import fastifyPlugin from 'bellwether/fastify';
import { bounded } from './helpers/bounded.js';
import { Fixture, type FixtureEvent, Fixtures, startFixture } from './helpers/child.js';
import { CLI, assertFailure, bellwether } from './helpers/cli.js';
import { keepLoopAlive } from './helpers/emitter.js';
import { freePort, getJson } from './helpers/http.js';
import { RUNTIMES, fixture, node } from './helpers/runtimes.js';
import { openSession, throughProxy } from './helpers/sessions.js';
import { tempDir } from './helpers/temp.js';
import { useZooKeeper } from './helpers/zookeeper.js';

// Waiting singletons do not keep a process alive: the test run must.
keepLoopAlive();

const HTTP_APP = fixture('http-app');
/** pino's level numbers. */
const DEBUG = 20;
const INFO = 30;
const WARN = 40;
const ERROR = 50;

type Line = FixtureEvent & { level: number; msg: string };

/** A pino logger (from debug up) writing to memory, and a way to await its lines. */
class LogLines {
  readonly lines: Line[] = [];
  readonly #waiters = new Set<{ match: (line: Line) => boolean; resolve: (line: Line) => void }>();
  readonly logger = pino({ level: 'debug' }, { write: (text: string) => this.#add(JSON.parse(text) as Line) });

  #add(line: Line): void {
    this.lines.push(line);
    for (const waiter of this.#waiters) {
      if (!waiter.match(line)) continue;
      this.#waiters.delete(waiter);
      waiter.resolve(line);
    }
  }

  /** The first line of `event` with these `fields` from line `from` on, logged already or to come (bounded). */
  next(event: string, fields: Record<string, unknown> = {}, from = 0, ms = 10_000): Promise<Line> {
    const match = (line: Line): boolean => line.event === event && Object.entries(fields).every(([key, value]) => line[key] === value);
    const found = this.lines.slice(from).find(match);
    if (found) return Promise.resolve(found);
    return bounded(`a log line ${event} ${JSON.stringify(fields)}`, new Promise<Line>((resolve) => this.#waiters.add({ match, resolve })), ms);
  }

  /** Where the lines logged from now on begin. */
  mark(): number {
    return this.lines.length;
  }
}

/** A job that runs until its signal aborts. */
const untilAborted = ({ signal }: { signal: AbortSignal }): Promise<unknown> => new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));

/** BellwetherErrors that reach process warnings while the test runs. */
function processWarnings(t: { after(fn: () => void): void }): BellwetherError[] {
  const seen: BellwetherError[] = [];
  const onWarning = (warning: Error): void => void (warning instanceof BellwetherError && seen.push(warning));
  process.on('warning', onWarning);
  t.after(() => void process.off('warning', onWarning));
  return seen;
}

test('a logger that is not pino-compatible is refused before anything starts, and never shown', () => {
  const secret = 'token-5f2c';
  const notALogger = { debug() {}, info() {}, warn() {}, error() {}, transport: { headers: { authorization: secret } } };
  const zk = new ZkSession({ connect: '127.0.0.1:1' });
  const make: [string, (logger: unknown) => unknown][] = [
    ['ZkSession', (logger) => new ZkSession({ connect: '127.0.0.1:1', logger: logger as Logger })],
    ['Candidate', (logger) => new Candidate(zk, 'refused', { logger: logger as Logger })],
    ['Observer', (logger) => new Observer(zk, 'refused', { logger: logger as Logger })],
    ['singleton()', (logger) => singleton({ name: 'refused', logger: logger as Logger })],
    ['Supervisor', (logger) => new Supervisor({ exec: HTTP_APP, controlSocket: false, logger: logger as Logger })],
    ['StatusBoard', (logger) => new StatusBoard({ logger: logger as Logger })],
    ['bellwether/express', (logger) => expressRouter({ logger: logger as Logger })],
  ];
  for (const [what, construct] of make) {
    for (const [given, got] of [[notALogger, 'an object without child'], ['info', 'a string'], [null, 'null']] as const) {
      assert.throws(
        () => construct(given),
        (err: unknown) => {
          assert.ok(err instanceof BellwetherError, what);
          assert.equal(err.code, ErrorCodes.INVALID_OPTION, what);
          assert.equal(err.message, `logger must be a pino-compatible logger (with debug, info, warn, error and child functions), got ${got}`, what);
          return true;
        },
      );
    }
  }
  // pino's Logger and Fastify's app.log are loggers as they are (this file compiles).
  const loggers: Logger[] = [pino({ level: 'silent' }), Fastify().log];
  assert.equal(loggers.length, 2);
});

describe('logging, on one ZooKeeper', () => {
  const zk1 = useZooKeeper();

  test('a session, a Candidate, an Observer and a fleet singleton: elected, suspended and reconnected, then cut off: step-down, demoted (suspended, lost), suspended, leader-gone, expired, elected again, closed', async (t) => {
    const warnings = processWarnings(t);
    const log = new LogLines();
    // 600 ms sessions: the leaders step down after 300 ms of silence, the session is suspended after 400 ms.
    const { proxy, zk } = await throughProxy(t, zk1.ensemble.servers[0]!.clientPort, { sessionTimeout: 600, logger: log.logger });
    const direct = openSession(t, zk1.ensemble.connectString());
    await Promise.all([zk.start(), direct.start()]);
    const firstSession = zk.sessionId;
    assert.deepEqual(pick(await log.next('connected'), 'level', 'sessionId', 'timeout'), { level: INFO, sessionId: firstSession, timeout: zk.timeout });

    const observer = new Observer(direct, 'logged', { logger: log.logger });
    t.after(() => observer.close());
    await observer.observe();
    const candidate = new Candidate(zk, 'logged', { logger: log.logger });
    t.after(() => candidate.close());
    const job = singleton({ name: 'logged-job', scope: 'cluster', zk, logger: log.logger, run: untilAborted });
    t.after(() => job.close());
    // An error with no listener goes to the logger (a stepDownAfter that does not fit the timeout), not to process warnings.
    const odd = new Candidate(direct, 'logged-odd', { stepDownAfter: 1, logger: log.logger });
    t.after(() => odd.close());
    await Promise.all([candidate.vote(), job.start(), odd.vote()]);

    const elected = await log.next('elected', { election: 'logged' });
    assert.deepEqual(pick(elected, 'level', 'token', 'msg'), { level: INFO, token: candidate.token, msg: `elected in logged (token ${candidate.token})` });
    await log.next('leader', { election: 'logged', level: INFO });
    const jobElected = await log.next('elected', { singleton: 'logged-job', election: undefined });
    assert.deepEqual(pick(jobElected, 'level', 'scope', 'token', 'fence'), { level: INFO, scope: 'cluster', token: job.token, fence: String(job.fence) });
    // The singleton's Candidate logs the same change at debug only: one info line per change.
    await log.next('elected', { singleton: 'logged-job', election: 'logged-job', level: DEBUG });
    const error = await log.next('error', { election: 'logged-odd' });
    assert.deepEqual(pick(error, 'level', 'code'), { level: ERROR, code: ErrorCodes.INVALID_OPTION });
    assert.match(error.msg, /^BW_ERR_INVALID_OPTION: stepDownAfter 1 ms does not fit/);

    // The connection dropped: suspended (disconnected), the same session back, both lead again.
    const drop = log.mark();
    proxy.drop();
    assert.deepEqual(pick(await log.next('suspended', {}, drop), 'level', 'sessionId', 'reason'), { level: WARN, sessionId: firstSession, reason: 'disconnected' });
    assert.deepEqual(pick(await log.next('reconnected', {}, drop), 'level', 'sessionId'), { level: INFO, sessionId: firstSession });
    await log.next('elected', { election: 'logged', token: elected['token'] }, drop);
    await log.next('elected', { singleton: 'logged-job', election: undefined }, drop);

    // Cut off (nothing forwarded, nothing refused): the leaders step down, the session is suspended, the server expires it.
    const cut = log.mark();
    proxy.mode = 'blackhole';
    const stepDown = await log.next('step-down', { election: 'logged' }, cut);
    assert.deepEqual(pick(stepDown, 'level', 'token', 'deadline'), { level: WARN, token: elected['token'], deadline: 300 });
    assert.ok((stepDown['silence'] as number) > 300, JSON.stringify(stepDown));
    assert.match(stepDown.msg, /^stepping down in logged: ZooKeeper has not answered for \d+ ms \(deadline 300 ms\)$/);
    assert.deepEqual(pick(await log.next('demoted', { election: 'logged' }, cut), 'level', 'token', 'reason'), { level: INFO, token: elected['token'], reason: 'suspended' });
    await log.next('step-down', { singleton: 'logged-job', level: WARN }, cut);
    const jobDemoted = await log.next('demoted', { singleton: 'logged-job', election: undefined }, cut);
    assert.deepEqual(pick(jobDemoted, 'level', 'token', 'reason', 'cause'), {
      level: WARN,
      token: jobElected['token'],
      reason: 'lost',
      cause: 'singleton logged-job lost fleet leadership (suspended)',
    });
    assert.deepEqual(pick(await log.next('suspended', {}, cut), 'level', 'sessionId', 'reason'), { level: WARN, sessionId: firstSession, reason: 'silent' });
    await log.next('leader-gone', { election: 'logged', level: WARN }, cut);

    const back = log.mark();
    proxy.mode = 'pass';
    assert.deepEqual(pick(await log.next('expired', {}, back), 'level', 'sessionId', 'onExpire'), { level: WARN, sessionId: firstSession, onExpire: 'reopen' });
    const secondSession = (await log.next('connected', {}, back))['sessionId'];
    assert.notEqual(secondSession, firstSession);
    const again = await log.next('elected', { election: 'logged' }, back);
    assert.ok((again['token'] as number) > (elected['token'] as number));
    await log.next('elected', { singleton: 'logged-job', election: undefined }, back);

    const end = log.mark();
    await job.close();
    await candidate.close();
    await zk.close();
    assert.equal((await log.next('demoted', { singleton: 'logged-job', election: undefined }, end))['reason'], 'closed');
    assert.deepEqual(pick(await log.next('demoted', { election: 'logged' }, end), 'level', 'reason'), { level: INFO, reason: 'resigned' });
    assert.deepEqual(pick(await log.next('closed', {}, end), 'level', 'sessionId'), { level: INFO, sessionId: secondSession });
    assert.deepEqual(warnings, [], 'with a logger, errors without a listener are logged, not process warnings');
  });

  test('a logger that throws, and a child() that returns no logger: the session, the election and the singleton go on; one process warning says so', async (t) => {
    const warned: Error[] = [];
    const onWarning = (warning: Error): void => void (warning.name === 'BellwetherWarning' && warned.push(warning));
    process.on('warning', onWarning);
    t.after(() => void process.off('warning', onWarning));
    let calls = 0;
    const sink = (): never => {
      calls += 1;
      throw new Error('log sink down');
    };
    const broken = { debug: sink, info: sink, warn: sink, error: sink, child: () => ({}) } as unknown as Logger;
    const zk = new ZkSession({ connect: zk1.ensemble.connectString(), logger: broken });
    t.after(() => zk.close());
    await zk.start();
    const job = singleton({ name: 'logged-broken', scope: 'cluster', zk, logger: broken, run: untilAborted });
    t.after(() => job.close());
    const elected = new Promise((resolve) => job.once('elected', resolve));
    await job.start();
    await bounded('the singleton is elected with a logger that throws', elected, 10_000);
    await job.close();
    await zk.close();
    assert.ok(calls >= 3, `the logger was called (${calls})`);
    await bounded('the process warning', new Promise<void>((resolve) => (warned.length ? resolve() : process.once('warning', () => resolve()))), 5000);
    assert.equal(warned.length, 1, 'one warning per logger given');
    assert.match(warned[0]!.message, /the logger threw \(log sink down\)/);
  });

  test("the primary's host ballot logs its Candidate's lines through the Supervisor's logger", async (t) => {
    const log = new LogLines();
    const primary = openSession(t, zk1.ensemble.connectString());
    await primary.start();
    // Internal: the module the Supervisor gives its logger to, driven directly with a stand-in worker.
    const { HostBallots } = (await import(new URL('../../dist/cluster/host-ballots.js', import.meta.url).href)) as {
      HostBallots: new (zk: ZkSession, onError: (error: Error) => void, log: Logger) => { onMessage(worker: Worker, message: unknown, mayVote: boolean): void; close(): Promise<void> };
    };
    const errors: string[] = [];
    const ballots = new HostBallots(primary, (err) => void errors.push(err.message), log.logger.child({ supervisor: 'test' }));
    t.after(() => ballots.close());
    const worker = { isConnected: () => true, send: () => true } as unknown as Worker;
    const election = '/_zkelection/host-logged';
    ballots.onMessage(worker, { bellwether: 'fleet-hold', election, name: 'host-logged', root: '/_zkelection', data: '', hold: 1, generation: 1 }, true);
    assert.deepEqual(pick(await log.next('elected', { election: 'host-logged' }), 'level', 'supervisor'), { level: INFO, supervisor: 'test' });
    // The worker lets go, so that close() resigns at once (a holder still there would be waited for).
    ballots.onMessage(worker, { bellwether: 'fleet-release', election, hold: 1 }, true);
    await ballots.close();
    assert.deepEqual(errors, []);
    assert.equal((await log.next('demoted', { election: 'host-logged' }))['reason'], 'resigned');
  });
});

for (const runtime of RUNTIMES) {
  test(`Supervisor (${runtime.name}) with pino: worker exit, restart, kill, crash loop, ready (debug), rolling restarts done and failed, the exits of a stop`, async (t) => {
    const port = await freePort();
    const broken = path.join(tempDir(t), 'broken');
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const options = { workers: 2, heartbeat: 50, timeout: 3000, bootTimeout: 3000, restart: { initialDelay: 10, maxRestarts: 1 } };
    // Slot 0 exits at every boot (a crash loop); slot 1 serves, and boots no more once `broken` exists.
    // pino's lines come on stdout, each an event of the fixture.
    const env = { PINO: '1', CRASH_INDEX: '0', BROKEN_IF_EXISTS: broken, PORT: String(port) };
    const primary = fixtures.add(startFixture(runtime, fixture('supervisor-primary'), [JSON.stringify(options)], env));
    const line = async (event: string, match: (e: FixtureEvent) => boolean = () => true): Promise<Line> => (await bounded(event, primary.next(event, match), 20_000)) as Line;
    const crashLoop = await line('crash-loop');
    assert.deepEqual(pick(crashLoop, 'level', 'worker', 'code', 'exits', 'window'), { level: ERROR, worker: 0, code: ErrorCodes.CRASH_LOOP, exits: 2, window: 60_000 });
    assert.match(crashLoop.msg, /^BW_ERR_CRASH_LOOP: worker slot 0 exited 2 times within 60000 ms; given up/);
    const first = await line('worker-ready', (e) => e['worker'] === 1);
    assert.equal(first.level, DEBUG);

    // Slot 1's worker says it is unhealthy: killed, and replaced.
    await getJson(port, '/unhealthy?code=3');
    const kill = await line('worker-kill', (e) => e['worker'] === 1);
    assert.deepEqual(pick(kill, 'level', 'workerPid', 'reason', 'msg'), { level: WARN, workerPid: first['workerPid'], reason: 'unhealthy', msg: `killing worker 1 (pid ${first['workerPid']}): unhealthy` });
    const restart = await line('worker-restart', (e) => e['worker'] === 1);
    assert.deepEqual(pick(restart, 'level', 'restarts', 'msg'), { level: INFO, restarts: 1, msg: `worker 1 restarted (pid ${restart['workerPid']})` });
    await line('worker-ready', (e) => e['worker'] === 1 && e['workerPid'] === restart['workerPid']);

    // A rolling restart (slot 0, given up, has nothing to replace), then one whose replacement cannot boot.
    process.kill(primary.pid, 'SIGHUP');
    assert.deepEqual(pick(await line('rollout-done'), 'level', 'msg'), { level: INFO, msg: 'rolling restart done: every worker replaced' });
    const rolled = await line('worker-ready', (e) => e['worker'] === 1 && e['workerPid'] !== first['workerPid'] && e['workerPid'] !== restart['workerPid']);
    fs.writeFileSync(broken, '');
    process.kill(primary.pid, 'SIGHUP');
    const failed = await line('rollout-failed');
    const reason = `the replacement (pid ${failed['workerPid']}) did not become ready`;
    assert.deepEqual(pick(failed, 'level', 'worker', 'code', 'reason'), { level: ERROR, worker: 1, code: ErrorCodes.ROLLOUT_FAILED, reason });
    assert.equal(failed.msg, `BW_ERR_ROLLOUT_FAILED: rolling restart stopped at slot 1: ${reason}; the old worker keeps serving`);
    primary.child.kill('SIGTERM');
    assert.deepEqual(await bounded('the primary exits', primary.exited, 20_000), { code: 0, signal: null }, primary.stderr);

    const exits = primary.events.filter((e) => e.event === 'worker-exit');
    const slot0 = exits.filter((e) => e['worker'] === 0).map((e) => [e['level'], e['exitCode'], e['replaced']]);
    assert.deepEqual(slot0, [[WARN, 1, true], [WARN, 1, false]], 'the crash loop: replaced once, then given up');
    assert.deepEqual(pick(await line('worker-restart', (e) => e['worker'] === 0), 'level', 'restarts'), { level: INFO, restarts: 1 });
    // Killed and replaced; the replacement that could not boot; the worker the first rollout put in, stopped. A worker
    // a rollout retires is not an exit of its slot (the Supervisor's `exit` event leaves it out too).
    const slot1 = exits.filter((e) => e['worker'] === 1).map((e) => [e['level'], e['workerPid'], e['exitCode'], e['replaced']]);
    assert.deepEqual(slot1, [[WARN, first['workerPid'], 0, true], [WARN, failed['workerPid'], 1, false], [INFO, rolled['workerPid'], 0, false]]);
    assert.equal((exits.at(-1) as Line).msg, 'worker 1 exited (0)');
  });
}

describe('bellwether start --log-format', () => {
  test('json: one JSON object per line (level, time, pid, hostname, event, msg); text, the default: "bellwether: " and the same messages; a parent gone', async (t) => {
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const dir = tempDir(t);
    /**
     * Slot 0 crash-loops; slot 1 serves until it is made unhealthy, then crash-loops too (its file
     * `broken` exists): every slot given up, the primary exits with code 4.
     */
    const run = async (format: 'json' | 'text'): Promise<{ code: number | null; stderr: string }> => {
      const [port, broken] = [await freePort(), path.join(dir, `${format}.broken`)];
      const args = [CLI, 'start', HTTP_APP, '--socket', path.join(dir, `${format}.sock`), '--workers', '2', '--restart-delay', '10', '--max-restarts', '1'];
      const env = { CRASH_INDEX: '0', BROKEN_IF_EXISTS: broken, PORT: String(port) };
      const primary = fixtures.add(new Fixture(node.bin, format === 'json' ? [...args, '--log-format', 'json'] : args, `bellwether start (${format})`, env));
      await bounded('workers ready', primary.stderrMatches(/1 of 2 workers ready/), 20_000);
      fs.writeFileSync(broken, '');
      await getJson(port, '/unhealthy?code=3');
      return { code: (await bounded('the primary exits', primary.exited, 20_000)).code, stderr: primary.stderr };
    };
    // A parent that is gone before the primary starts: it stops at once.
    const parent = spawnSync('true').pid;
    const orphan = fixtures.add(new Fixture(node.bin, [CLI, 'start', HTTP_APP, '--log-format', 'json', '--socket', path.join(dir, 'orphan.sock'), '--parent-pid', String(parent)], 'bellwether start --parent-pid'));
    const [json, text] = await Promise.all([run('json'), run('text')]);
    assert.equal(json.code, 4, json.stderr);
    assert.equal(text.code, 4, text.stderr);

    const lines = json.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as Line);
    for (const l of lines) {
      const types = [l.level, l['time'], l['pid'], l['hostname'], l.event, l.msg].map((value) => typeof value);
      assert.deepEqual(types, ['number', 'number', 'number', 'string', 'string', 'string'], JSON.stringify(l));
    }
    const events = lines.map((l) => [l.event, l['worker'], l.level]);
    assert.deepEqual(events, [
      ['worker-exit', 0, WARN],
      ['worker-restart', 0, INFO],
      ['worker-exit', 0, WARN],
      ['crash-loop', 0, ERROR],
      ['started', undefined, INFO],
      ['worker-kill', 1, WARN],
      ['worker-exit', 1, WARN],
      ['worker-restart', 1, INFO],
      ['worker-exit', 1, WARN],
      ['crash-loop', 1, ERROR],
      ['exhausted', undefined, ERROR],
    ]);
    assert.deepEqual(pick(lines[4]!, 'ready', 'workers', 'msg'), { ready: 1, workers: 2, msg: `1 of 2 workers ready (primary pid ${lines[4]!['pid']})` });
    assert.deepEqual(pick(lines[10]!, 'slots', 'exitCode'), { slots: 2, exitCode: 4 });

    // The same lines as text, pids aside.
    const samePids = (s: string): string => s.replace(/pid \d+/g, 'pid N');
    assert.deepEqual(samePids(text.stderr).split('\n'), samePids(`${lines.map((l) => `bellwether: ${l.msg}`).join('\n')}\n`).split('\n'));
    // Today's lines, as they were before loggers.
    for (const expected of [
      'bellwether: worker 0 exited (1), replacing it',
      'bellwether: BW_ERR_CRASH_LOOP: worker slot 0 exited 2 times within 60000 ms; given up (the other workers keep serving)',
      /^bellwether: 1 of 2 workers ready \(primary pid \d+\)$/,
      /^bellwether: killing worker 1 \(pid \d+\): unhealthy$/,
      'bellwether: every worker slot (2) was given up after crash loops; nothing left to serve, exiting with code 4',
    ]) {
      const found = text.stderr.split('\n').some((l) => (typeof expected === 'string' ? l === expected : expected.test(l)));
      assert.ok(found, `${expected}\n${text.stderr}`);
    }

    assert.equal((await bounded('the orphan exits', orphan.exited, 20_000)).code, 70, orphan.stderr);
    const orphaned = orphan.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as Line);
    assert.deepEqual(orphaned.map((l) => pick(l, 'level', 'event', 'parent', 'exitCode', 'msg')), [
      { level: WARN, event: 'orphaned', parent, exitCode: 70, msg: `parent process ${parent} is gone (--stop-with-parent / --parent-pid); stopping` },
    ]);
  });

  test('a bad value is a usage error; with json, a start that fails says so in one JSON line', async (t) => {
    const missing = path.join(tempDir(t), 'missing.js');
    const [yaml, failed, help] = await Promise.all([
      bellwether(['start', HTTP_APP, '--log-format', 'yaml']),
      bellwether(['start', missing, '--log-format', 'json']),
      bellwether(['--help']),
    ]);
    assertFailure(yaml, 64, /^bellwether: BW_ERR_INVALID_OPTION: --log-format must be text or json, got "yaml"$/m);
    assert.equal(failed.code, 66);
    assert.equal(failed.stdout, '');
    const [only, ...rest] = failed.stderr.trimEnd().split('\n');
    assert.deepEqual(rest, []);
    const line = JSON.parse(only!) as Line;
    assert.deepEqual(pick(line, 'level', 'event', 'code', 'exitCode', 'msg'), {
      level: ERROR,
      event: 'failed',
      code: ErrorCodes.ENTRY_NOT_FOUND,
      exitCode: 66,
      msg: `BW_ERR_ENTRY_NOT_FOUND: entry script ${missing} does not exist or is not a file`,
    });
    assert.match(help.stdout, /--log-format FORMAT/);
  });
});

describe('the adapters', () => {
  test("bellwether/fastify: the singletons log to app.log when the app logs; nothing per request; `logger: false` for none", async (t) => {
    const lockDir = tempDir(t);
    const log = new LogLines();
    const app = Fastify({ loggerInstance: log.logger });
    t.after(() => app.close());
    const job = singleton({ name: 'fastify-logged', lockDir, run: untilAborted });
    await app.register(fastifyPlugin, { singletons: [job] });
    assert.deepEqual(pick(await log.next('elected', { singleton: 'fastify-logged' }), 'level', 'scope', 'token'), { level: INFO, scope: 'host', token: job.token });
    const before = log.mark();
    for (const url of ['/healthz', '/readyz', '/bellwether']) await app.inject(url);
    // Fastify logs its requests; bellwether (every line of it has an `event`) nothing.
    assert.ok(log.lines.length > before, "Fastify's own request lines");
    assert.deepEqual(log.lines.slice(before).filter((l) => l.event !== undefined), [], 'nothing logged per request');
    await app.close();
    assert.equal((await log.next('demoted', { singleton: 'fastify-logged' }, before))['reason'], 'closed');

    const quiet = new LogLines();
    const other = Fastify({ loggerInstance: quiet.logger });
    t.after(() => other.close());
    const unlogged = singleton({ name: 'fastify-unlogged', lockDir, run: untilAborted });
    const elected = new Promise((resolve) => unlogged.once('elected', resolve));
    await other.register(fastifyPlugin, { singletons: [unlogged], logger: false });
    await bounded('elected', elected, 5000);
    assert.deepEqual(quiet.lines.filter((l) => l.event !== undefined), []);
  });

  for (const [what, options] of [
    ['without a logger', {}],
    ["whose logger is 'silent'", { logger: { level: 'silent' } }],
    ["whose logger logs 'fatal' only", { logger: { level: 'fatal' } }],
  ] as const) {
    test(`bellwether/fastify in an app ${what}: an error with no listener is still a process warning`, async (t) => {
      const warnings = processWarnings(t);
      const app = Fastify(options);
      t.after(() => app.close());
      const job = singleton({ name: 'fastify-failing', lockDir: tempDir(t), backoff: { initial: 10_000 }, run: () => Promise.reject(new Error('boom')) });
      const demoted = new Promise((resolve) => job.once('demoted', resolve));
      await app.register(fastifyPlugin, { singletons: [job] });
      await bounded('the run fails', demoted, 5000);
      // process.emitWarning emits on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings.map((w) => w.code), [ErrorCodes.CALLBACK_FAILED]);
    });
  }

  test('bellwether/express: `logger` for the singletons that have none; a failed run: the error, demoted (failed)', async (t) => {
    const warnings = processWarnings(t);
    const log = new LogLines();
    const lockDir = tempDir(t);
    const job = singleton({ name: 'express-logged', lockDir, run: untilAborted });
    const failing = singleton({ name: 'express-failing', lockDir, backoff: { initial: 10_000 }, run: () => Promise.reject(new Error('boom')) });
    const router = expressRouter({ singletons: [job, failing], logger: log.logger });
    t.after(() => router.close());
    await router.start();
    assert.equal((await log.next('elected', { singleton: 'express-logged' }))['scope'], 'host');
    const error = await log.next('error', { singleton: 'express-failing' });
    assert.deepEqual(pick(error, 'level', 'code', 'msg'), { level: ERROR, code: ErrorCodes.CALLBACK_FAILED, msg: 'BW_ERR_CALLBACK_FAILED: run of singleton express-failing failed: boom' });
    assert.deepEqual(pick(await log.next('demoted', { singleton: 'express-failing' }), 'level', 'reason'), { level: WARN, reason: 'failed' });
    await router.close();
    assert.deepEqual(pick(await log.next('demoted', { singleton: 'express-logged' }), 'level', 'reason'), { level: INFO, reason: 'closed' });
    assert.deepEqual(warnings, []);
  });
});

function pick(line: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, line[key]]));
}
