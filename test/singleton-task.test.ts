/**
 * Singleton tasks in worker threads, across processes: a task that spins
 * and ignores its signal is terminated when leadership ends (close, a
 * step-down when its server goes silent, a session expiry), before the term
 * is over; the next leader's task starts only after; `every` never overlaps;
 * a failing task contends again after the backoff. Node and Bun.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { type Fixture, Fixtures, startFixture } from './helpers/child.js';
import { readJsonLines } from './helpers/fence-log.js';
import { RUNTIMES, type Runtime, fixture } from './helpers/runtimes.js';
import { startProxy } from './helpers/sessions.js';
import { tempDir } from './helpers/temp.js';
import { expireSession, idBuffer, useZooKeeper } from './helpers/zookeeper.js';

const CONTENDER = fixture('task-contender');
const SESSION_MS = '2000';

interface TaskRecord {
  kind: 'start' | 'tick' | 'stop' | 'demoted';
  token: number;
  pid: number;
}

function records(file: string): TaskRecord[] {
  return readJsonLines<TaskRecord>(file);
}

/**
 * The term of (pid, token) is over in the log: its thread wrote nothing after
 * its process said the term was over (the 'demoted' record comes after the
 * thread has exited), and no later term's task started before that.
 */
function assertTermEndedFirst(log: TaskRecord[], pid: number, token: number): void {
  const ours = (r: TaskRecord): boolean => r.pid === pid && r.token === token;
  const demoted = log.findIndex((r) => ours(r) && r.kind === 'demoted');
  assert.ok(demoted >= 0, `the term of token ${token} ended`);
  const lastWrite = log.findLastIndex((r) => ours(r) && r.kind !== 'demoted');
  assert.ok(lastWrite >= 0 && lastWrite < demoted, `the thread of token ${token} wrote after its term was over`);
  const laterStart = log.findIndex((r) => r.kind === 'start' && r.token > token);
  assert.ok(laterStart === -1 || laterStart > demoted, `a later term started at record ${laterStart}, before the term of token ${token} was over (record ${demoted})`);
}

/** Waits (bounded, polling the file: a thread's writes send no event) until the log has a record that matches. */
async function logged(file: string, match: (r: TaskRecord) => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (fs.existsSync(file) && records(file).some(match)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no such record in ${file} within 10 s`);
}

/** The fixture's `n`th event named `name` (1-based), seen or future. */
function nth(f: Fixture, name: string, n: number): Promise<Record<string, unknown>> {
  return f.next(name, (e) => f.events.filter((x) => x.event === name).indexOf(e) === n - 1);
}

/** A directory with the shared log, and the test's contenders, killed after it. */
function setUp(t: TestContext): { dir: string; logFile: string; fixtures: Fixtures } {
  const dir = tempDir(t);
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  return { dir, logFile: path.join(dir, 'task.log'), fixtures };
}

async function closeAll(...contenders: Fixture[]): Promise<void> {
  for (const f of contenders) f.send('close');
  await Promise.all(contenders.map((f) => f.next('closed')));
}

function firstElected(pair: Fixture[]): Promise<{ leader: Fixture; other: Fixture; token: number }> {
  return Promise.race(pair.map((f, i) => f.next('elected').then((e) => ({ leader: f, other: pair[1 - i]!, token: Number(e['token']) }))));
}

for (const runtime of RUNTIMES) {
  describe(`singleton tasks (${runtime.name})`, () => {
    const zk = useZooKeeper();

    const host = (fixtures: Fixtures, logFile: string, lockDir: string, env: Record<string, string> = {}, r: Runtime = runtime): Fixture =>
      fixtures.add(startFixture(r, CONTENDER, ['host', logFile, lockDir], { TASK_MODE: 'spin', ...env }));

    test('close(): a spinning task that ignores its signal is terminated, its thread gone before the next leader\'s task starts; the thread sees the term\'s token', async (t) => {
      const { dir, logFile, fixtures } = setUp(t);
      const pair = [host(fixtures, logFile, dir), host(fixtures, logFile, dir)];
      await Promise.all(pair.map((f) => f.next('contending')));
      const { leader, other, token } = await firstElected(pair);
      await logged(logFile, (r) => r.kind === 'tick' && r.token === token);
      leader.send('close');
      const closed = await leader.next('closed');
      const next = Number((await other.next('elected'))['token']);
      assert.ok(next > token);
      const ran = await leader.next('ran');
      assert.equal(ran['outcome'], 'stopped');
      const terminated = await leader.next('error');
      assert.equal(terminated['code'], 'BW_ERR_TASK_TERMINATED', 'the singleton says that its task had to be terminated');
      assert.match(String(terminated['message']), /did not settle within 300 ms/);
      await logged(logFile, (r) => r.kind === 'start' && r.token === next);
      const log = records(logFile);
      assert.deepEqual(log.filter((r) => r.kind === 'start').map((r) => [r.pid, r.token]), [[leader.pid, token], [other.pid, next]], 'the thread sees the singleton\'s token');
      assertTermEndedFirst(log, leader.pid, token);
      assert.ok(Number(closed['ms']) >= 300, 'close() waited for the stop timeout (the task ignores its signal)');
      await closeAll(other);
    });

    test('every: runs one at a time while leader, and none after the term', async (t) => {
      const { dir, logFile, fixtures } = setUp(t);
      const runner = host(fixtures, logFile, dir, { TASK_MODE: 'polite', EVERY: '50' });
      const { token } = await firstElected([runner, runner]);
      await nth(runner, 'ran', 4);
      await closeAll(runner);
      const log = records(logFile).filter((r) => r.token === token);
      const runs = log.filter((r) => r.kind === 'start').length;
      assert.ok(runs >= 4);
      // start, stop, start, stop, ...: never two at once; the last one may have been stopped early.
      const kinds = log.filter((r) => r.kind !== 'demoted').map((r) => r.kind);
      assert.deepEqual(kinds, Array.from({ length: kinds.length }, (_, i) => (i % 2 === 0 ? 'start' : 'stop')));
      assert.equal(log.at(-1)?.kind, 'demoted', 'no run after the term');
    });

    test('a failing task: an error event with its cause, then the singleton contends again after the backoff', async (t) => {
      const { dir, logFile, fixtures } = setUp(t);
      const runner = host(fixtures, logFile, dir, { TASK_MODE: 'fail' });
      const first = Number((await runner.next('elected'))['token']);
      const error = await runner.next('error');
      assert.match(String(error['message']), /run of singleton task-job/);
      assert.equal(error['cause'], 'task failed on purpose');
      assert.equal((await runner.next('ran'))['outcome'], 'failed');
      assert.equal((await runner.next('demoted'))['reason'], 'failed');
      assert.ok(Number((await nth(runner, 'elected', 2))['token']) > first, 'elected again after the backoff');
      await closeAll(runner);
    });

    test('a thread that exits, or runs out of its heap limit, is a failed run; Bun warns that it does not enforce the limit', async (t) => {
      const { dir, logFile, fixtures } = setUp(t);
      const exits = host(fixtures, logFile, dir, { TASK_MODE: 'exit' });
      assert.match(String((await exits.next('error'))['cause']), /exited with code: 3/);
      assert.equal((await exits.next('ran'))['outcome'], 'failed');
      assert.equal((await exits.next('demoted'))['reason'], 'failed');
      await closeAll(exits);
      const heap = host(fixtures, logFile, dir, { TASK_MODE: 'oom', HEAP_MB: '32', STOP_TIMEOUT: '200' });
      if (runtime.name === 'bun') {
        assert.match(String((await heap.next('warning'))['message']), /resourceLimits are not enforced under Bun/);
      } else {
        assert.match(String((await heap.next('error'))['cause']), /memory limit/);
        assert.equal((await heap.next('ran'))['outcome'], 'failed');
      }
      await closeAll(heap);
    });

    test('a task that stops on its signal, or when stillLeader() turns false, ends by itself: a stopped run, no error; what a task throws keeps its message', async (t) => {
      const { dir, logFile, fixtures } = setUp(t);
      for (const mode of ['signal', 'watch']) {
        // stopTimeout 60 s: a task that did not stop by itself would hold close() that long.
        const runner = host(fixtures, logFile, dir, { TASK_MODE: mode, STOP_TIMEOUT: '60000' });
        const token = Number((await runner.next('elected'))['token']);
        await logged(logFile, (r) => r.kind === 'start' && r.token === token);
        await closeAll(runner);
        assert.equal((await runner.next('ran'))['outcome'], 'stopped', mode);
        assert.equal(runner.count('error'), 0, `${mode}: ${JSON.stringify(runner.events.find((e) => e.event === 'error'))}`);
        assert.ok(records(logFile).some((r) => r.kind === 'stop' && r.token === token), `${mode}: the task itself wrote its last record`);
      }
      const throws = host(fixtures, logFile, dir, { TASK_MODE: 'uncloneable' });
      assert.equal((await throws.next('error'))['cause'], 'with a function as its cause');
      await closeAll(throws);
    });

    test('a thread that fails as it starts (out of a 4 MiB heap, the least accepted) is a failed run, not the end of the process (Bun: the limit is not enforced, the task runs)', async (t) => {
      const { dir, logFile, fixtures } = setUp(t);
      const runner = host(fixtures, logFile, dir, { TASK_MODE: 'spin', HEAP_MB: '4' });
      if (runtime.name === 'bun') {
        const token = Number((await runner.next('elected'))['token']);
        await logged(logFile, (r) => r.kind === 'tick' && r.token === token);
      } else {
        assert.match(String((await runner.next('error'))['cause']), /memory limit/);
        assert.equal((await runner.next('ran'))['outcome'], 'failed');
        await nth(runner, 'elected', 2); // it contends again after the backoff
      }
      await closeAll(runner);
    });

    test('cluster: the leader\'s server goes silent: it steps down and its task\'s thread is gone before the next leader\'s task starts', async (t) => {
      const { logFile, fixtures } = setUp(t);
      const proxy = await startProxy(t, zk.ensemble.servers[0]!.clientPort);
      const silent = fixtures.add(startFixture(runtime, CONTENDER, ['cluster', logFile, `127.0.0.1:${proxy.port}`, SESSION_MS], { TASK_MODE: 'spin' }));
      const token = Number((await silent.next('elected'))['token']);
      await logged(logFile, (r) => r.kind === 'tick' && r.token === token);
      const other = fixtures.add(startFixture(runtime, CONTENDER, ['cluster', logFile, zk.ensemble.connectString(), SESSION_MS], { TASK_MODE: 'spin' }));
      await other.next('contending');
      proxy.mode = 'blackhole'; // no answer past the step-down deadline (half the session timeout): leadership lost
      assert.equal((await silent.next('demoted'))['reason'], 'lost');
      const next = Number((await other.next('elected'))['token']);
      assert.ok(next > token);
      await logged(logFile, (r) => r.kind === 'start' && r.token === next);
      assertTermEndedFirst(records(logFile), silent.pid, token);
      await closeAll(other);
    });

    test('cluster: the leader\'s session expires: its task is terminated and the term ends; the next leader runs its own', async (t) => {
      const { logFile, fixtures } = setUp(t);
      const first = fixtures.add(startFixture(runtime, CONTENDER, ['cluster', logFile, zk.ensemble.connectString(), SESSION_MS], { TASK_MODE: 'spin' }));
      const session = await first.next('session');
      const token = Number((await first.next('elected'))['token']);
      await logged(logFile, (r) => r.kind === 'tick' && r.token === token);
      const other = fixtures.add(startFixture(runtime, CONTENDER, ['cluster', logFile, zk.ensemble.connectString(), SESSION_MS], { TASK_MODE: 'spin' }));
      await other.next('contending');
      await expireSession(zk.ensemble.servers[0]!.clientPort, idBuffer(String(session['sessionId'])), Buffer.from(String(session['password']), 'hex'));
      assert.equal((await first.next('demoted'))['reason'], 'lost');
      // The next leader: the other one, or the first again in its new session if its new ballot came
      // before the other's (the other said 'contending' before its ballot was written).
      const next = await Promise.race([other, first].map((f) => f.next('elected', (e) => Number(e['token']) > token)));
      assert.ok(Number(next['token']) > token);
      // An injected expiry elects the next leader at once, without the step-down delay a silent server gives:
      // the old task may still be within its stop timeout then. What holds: its thread is gone when its term ends.
      const log = records(logFile);
      const demoted = log.findIndex((r) => r.pid === first.pid && r.kind === 'demoted');
      assert.ok(log.findLastIndex((r) => r.pid === first.pid && r.token === token && r.kind === 'tick') < demoted);
      await closeAll(other, first);
    });
  });
}
