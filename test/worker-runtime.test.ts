import assert from 'node:assert/strict';
import { type TestContext, describe, test } from 'node:test';
import { type Fixture, type FixtureEvent, Fixtures, startFixture } from './helpers/child.js';
import { bounded as boundedBy } from './helpers/bounded.js';
import { getText } from './helpers/http.js';
import { gone } from './helpers/processes.js';
import { RUNTIMES, type Runtime, fixture } from './helpers/runtimes.js';
import { ORPHAN_EXIT_CODE, worker } from './fixtures/worker-dist.js';

const PRIMARY = fixture('mini-primary');
const CJS_ENTRY = new URL('./fixtures/mini-worker-cjs.cjs', import.meta.url).pathname;
const BROKEN_ENTRY = fixture('mini-worker-broken');
const WAIT_MS = 10_000;

/** Every wait is bounded: this file may run without --test-timeout. */
const bounded = <T>(what: string, promise: Promise<T>, ms = WAIT_MS): Promise<T> => boundedBy(what, promise, ms);

/** The n-th event named `name` that matches, counting from event index `from`. */
async function nth(f: Fixture, name: string, match: (e: FixtureEvent) => boolean, n: number, from = 0): Promise<FixtureEvent> {
  let seen = from;
  let event: FixtureEvent | undefined;
  for (let i = 0; i < n; i++) {
    event = await bounded(`${name} #${i + 1} from ${f.label}`, f.next(name, match, seen));
    seen = f.events.indexOf(event) + 1;
  }
  return event!;
}

/** Resolves once the fixture's stderr (its workers' too: inherited) matches. */
function stderrMatches(f: Fixture, pattern: RegExp): Promise<void> {
  return bounded(`stderr matching ${pattern}`, new Promise<void>((resolve) => {
    // Fixture's own listener came first: f.stderr already holds each chunk we see.
    const check = (): void => {
      if (!pattern.test(f.stderr)) return;
      f.child.stderr!.off('data', check);
      resolve();
    };
    f.child.stderr!.on('data', check);
    check();
  }));
}

const of = (index: number) => (e: FixtureEvent): boolean => e['index'] === index;
const from = (pid: number) => (e: FixtureEvent): boolean => e['pid'] === pid;
const codes = (events: FixtureEvent[]): unknown[] => events.map((e) => e['code']);

interface Primary {
  primary: Fixture;
  /** Worker pids by index. */
  pids: number[];
}

/** A mini primary with `count` workers, all past boot (every afterFork callback ran). */
async function startPrimary(t: TestContext, runtime: Runtime, count: number, env: NodeJS.ProcessEnv = {}, entry?: string): Promise<Primary> {
  const fixtures = new Fixtures();
  const primary = fixtures.add(startFixture(runtime, PRIMARY, [String(count), ...(entry ? [entry] : [])], env));
  const pids: number[] = [];
  t.after(async () => {
    // Workers first: the primary's stdout pipe closes only when they are gone too.
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await fixtures.killAll();
  });
  for (let index = 0; index < count; index++) {
    pids.push(Number((await bounded(`fork of worker ${index}`, primary.next('forked', of(index))))['workerPid']));
  }
  if (!entry) {
    for (const pid of pids) await bounded(`boot of worker ${pid}`, primary.next('afterFork', (e) => e['pid'] === pid && e['n'] === 3));
  }
  return { primary, pids };
}

const ZK_SETTINGS = {
  connect: '127.0.0.1:2181,127.0.0.2:2182/app',
  sessionTimeout: 4000,
  connectTimeout: 9000,
  onExpire: 'exit',
  auth: [{ scheme: 'digest', credentials: 'user:secret' }],
  retry: { attempts: 2, initialDelay: 10, maxDelay: 500 },
};

for (const runtime of RUNTIMES) {
  describe(`worker runtime, primary and workers under ${runtime.name}`, () => {
    test('boot: afterFork callbacks run after the entry script (top-level await included), in order, a throwing one reported; zkSettings; invalid codes', async (t) => {
      const { primary, pids } = await startPrimary(t, runtime, 1, { MINI_ZK_SETTINGS: JSON.stringify(ZK_SETTINGS) });
      const [pid] = pids as [number];
      const entry = primary.events.find((e) => e.event === 'entry' && e['pid'] === pid)!;
      assert.equal(entry['isSupervised'], true);
      assert.equal(entry['index'], 0);
      assert.deepEqual(entry['zkSettings'], ZK_SETTINGS);
      assert.deepEqual(entry['invalidCodes'], ['BW_ERR_INVALID_OPTION', 'BW_ERR_INVALID_OPTION', 'BW_ERR_INVALID_OPTION']);
      const boot = primary.events
        .filter((e) => e['pid'] === pid && (e.event === 'entry' || e.event === 'entry-done' || e.event === 'afterFork'))
        .map((e) => (e.event === 'afterFork' ? `afterFork ${e['n']}` : e.event));
      assert.deepEqual(boot, ['entry', 'entry-done', 'afterFork 1', 'afterFork 2', 'afterFork 3']);
      await stderrMatches(primary, /afterFork callback of bellwether worker 0 \(pid \d+\) failed: afterFork boom/);
      // Still serving after the throwing callback; ready() called twice, sent once.
      const after = primary.events.length;
      await nth(primary, 'heartbeat', of(0), 3, after);
      assert.equal(primary.events.filter((e) => e.event === 'ready' && e['index'] === 0).length, 1);
      assert.equal(primary.count('worker-exit'), 0);
    });

    test('heartbeats carry 0, then 3 after unhealthy(3), then 0 again after healthy(); the other worker stays at 0', async (t) => {
      const { primary } = await startPrimary(t, runtime, 2);
      await nth(primary, 'heartbeat', of(0), 3);
      await nth(primary, 'heartbeat', of(1), 3);

      const beforeUnhealthy = primary.events.length;
      primary.send('send 0 unhealthy 3');
      const firstThree = await nth(primary, 'heartbeat', (e) => e['index'] === 0 && e['code'] === 3, 1, beforeUnhealthy);
      await nth(primary, 'heartbeat', of(0), 3, primary.events.indexOf(firstThree) + 1);
      const beforeHealthy = primary.events.length;
      primary.send('send 0 healthy');
      const firstZero = await nth(primary, 'heartbeat', (e) => e['index'] === 0 && e['code'] === 0, 1, beforeHealthy);
      await nth(primary, 'heartbeat', of(0), 3, primary.events.indexOf(firstZero) + 1);

      const beats = (index: number, start: number, end = primary.events.length): FixtureEvent[] =>
        primary.events.slice(start, end).filter((e) => e.event === 'heartbeat' && e['index'] === index);
      assert.ok(codes(beats(0, 0, beforeUnhealthy)).every((c) => c === 0), 'healthy until unhealthy(3)');
      const whileUnhealthy = codes(beats(0, primary.events.indexOf(firstThree), beforeHealthy));
      assert.ok(whileUnhealthy.length >= 4 && whileUnhealthy.every((c) => c === 3), `3 until healthy(): ${whileUnhealthy}`);
      assert.ok(codes(beats(0, primary.events.indexOf(firstZero))).every((c) => c === 0), '0 again after healthy()');
      assert.ok(codes(beats(1, 0)).every((c) => c === 0), 'worker 1 never unhealthy');
    });

    test('a worker whose event loop is blocked for 1 s sends no heartbeat meanwhile', async (t) => {
      const { primary, pids } = await startPrimary(t, runtime, 2);
      await nth(primary, 'heartbeat', of(0), 5);
      const beforeBlock = primary.events.length;
      primary.send('send 0 block 1000');
      const end = await bounded('block-end', primary.next('block-end', from(pids[0]!), beforeBlock));
      await nth(primary, 'heartbeat', of(0), 3, primary.events.indexOf(end) + 1);
      const start = Number(primary.events.find((e) => e.event === 'block-start' && e['pid'] === pids[0])!['at']);

      const at = (index: number): number[] =>
        primary.events.filter((e) => e.event === 'heartbeat' && e['index'] === index).map((e) => Number(e['at']));
      const gaps = (times: number[]): number[] => times.slice(1).map((time, i) => time - times[i]!);
      const normal = gaps(at(0).filter((time) => time < start)).sort((a, b) => a - b);
      const median = normal[Math.floor(normal.length / 2)]!;
      const longest = Math.max(...gaps(at(0)));
      t.diagnostic(`${runtime.name}: median gap ${median} ms before the block, longest gap ${longest} ms`);
      assert.ok(longest >= 900, `longest gap around the block: ${longest} ms`);
      assert.ok(longest >= 3 * median, `longest gap ${longest} ms vs normal ${median} ms`);
      // The primary kept receiving: only the blocked worker went quiet.
      const otherDuringBlock = at(1).filter((time) => time > start && time < Number(end['at'])).length;
      assert.ok(otherDuringBlock >= 3, `worker 1 heartbeats during the block: ${otherDuringBlock}`);
    });

    test('graceful shutdown (the primary asks, then SIGTERM): onShutdown callbacks in order, a throwing one isolated, then exit 0 by itself', async (t) => {
      const { primary, pids } = await startPrimary(t, runtime, 2);
      const stopped = async (index: number, from0: number): Promise<void> => {
        const pid = pids[index]!;
        const exit = await bounded(`exit of worker ${index}`, primary.next('worker-exit', of(index), from0));
        assert.equal(exit['code'], 0);
        assert.equal(exit['signal'], null);
        assert.equal(exit['exitedAfterDisconnect'], true, 'left through cluster.worker.disconnect()');
        const steps = primary.events
          .slice(from0)
          .filter((e) => e['pid'] === pid && (e.event === 'shutdown-cb' || e.event === 'exit'))
          .map((e) => (e.event === 'exit' ? `exit ${e['code']}` : `cb ${e['n']}`));
        assert.deepEqual(steps, ['cb 1', 'cb 3', 'exit 0']);
        await stderrMatches(primary, new RegExp(`onShutdown callback of bellwether worker ${index} \\(pid ${pid}\\) failed: onShutdown boom`));
      };

      const beforeShutdown = primary.events.length;
      primary.send('shutdown 0');
      await stopped(0, beforeShutdown);
      // The other worker was not touched.
      await nth(primary, 'heartbeat', of(1), 2, primary.events.length);

      const beforeTerm = primary.events.length;
      process.kill(pids[1]!, 'SIGTERM');
      await stopped(1, beforeTerm);
    });

    const closeInApp = runtime.name === 'bun';
    test(`graceful shutdown with an HTTP server: an in-flight request finishes, then exit 0 (${closeInApp ? 'the app closes its server: Bun’s disconnect does not' : 'cluster.worker.disconnect() closes the server'})`, async (t) => {
      const { primary, pids } = await startPrimary(t, runtime, 1, { MINI_SERVER: '1', MINI_CLOSE_SERVER: closeInApp ? '1' : '0' });
      const port = Number((await bounded('listening', primary.next('listening', from(pids[0]!))))['port']);
      const beforeRequest = primary.events.length;
      const response = getText(port, '/slow');
      await bounded('request', primary.next('request', from(pids[0]!), beforeRequest));
      primary.send('shutdown 0');
      const { status, body } = await bounded('response', response);
      assert.deepEqual({ status, body }, { status: 200, body: 'slow done' });
      const exit = await bounded('exit of worker 0', primary.next('worker-exit', of(0), beforeRequest));
      assert.equal(exit['code'], 0);
    });

    for (const disconnect of ['kept', 'removed'] as const) {
      const how = disconnect === 'kept' ? "'disconnect' and the ppid check" : "the ppid check alone ('disconnect' listeners removed)";
      test(`orphan fencing by ${how}: the primary SIGKILLed, every worker is gone within 1 s, exit code 70`, async (t) => {
        // Serving workers: an idle one would just end once its channel closed (exit 0), fenced or not.
        const env = { MINI_SERVER: '1', ...(disconnect === 'removed' ? { MINI_NO_DISCONNECT: '1' } : {}) };
        const { primary, pids } = await startPrimary(t, runtime, 3, env);
        process.kill(primary.pid, 'SIGKILL');
        const killedAt = Date.now();
        const left = await gone(pids, 1000);
        const took = Date.now() - killedAt;
        assert.deepEqual(left, [], `workers still running ${took} ms after the primary was killed`);
        for (const pid of pids) {
          const exit = await bounded(`exit report of ${pid}`, primary.next('exit', from(pid)));
          const seen = primary.events.find((e) => e.event === 'disconnect-seen' && e['pid'] === pid);
          t.diagnostic(
            `${runtime.name} worker ${pid}: exit ${exit['code']}, 'disconnect' ${seen ? `fired (ppid then ${seen['ppid']})` : 'did not fire'}, ppid at exit ${exit['ppid']}`,
          );
          assert.equal(exit['code'], ORPHAN_EXIT_CODE);
          if (disconnect === 'removed') assert.notEqual(exit['ppid'], primary.pid, 'fenced by the changed ppid');
        }
        t.diagnostic(`${runtime.name}: all ${pids.length} workers gone ${took} ms after SIGKILL`);
      });
    }

    test('entry scripts: a CommonJS one loads; one that throws makes the worker exit 1 with the error on stderr', async (t) => {
      const cjs = await startPrimary(t, runtime, 1, {}, CJS_ENTRY);
      const loaded = await bounded('cjs-entry', cjs.primary.next('cjs-entry', from(cjs.pids[0]!)));
      assert.equal(loaded['commonjs'], true);
      await nth(cjs.primary, 'heartbeat', of(0), 2);

      const broken = await startPrimary(t, runtime, 1, {}, BROKEN_ENTRY);
      const exit = await bounded('exit of the broken worker', broken.primary.next('worker-exit', of(0)));
      assert.equal(exit['code'], 1);
      await stderrMatches(broken.primary, /bellwether worker 0 \(pid \d+\): cannot load entry script .*mini-worker-broken\.js: Error: broken entry script/);
    });
  });
}

test('outside a supervised worker: not supervised, no index, no settings, codes still checked, the process not kept alive', async () => {
  assert.equal(worker.isSupervised, false);
  assert.equal(worker.index, undefined);
  assert.equal(worker.zkSettings(), undefined);
  for (const code of [0, 256, 1.5, -1, Number.NaN, '3' as unknown as number]) {
    assert.throws(() => worker.unhealthy(code), { name: 'BellwetherError', code: 'BW_ERR_INVALID_OPTION' }, String(code));
  }
  worker.unhealthy(1);
  worker.unhealthy(255);
  worker.healthy();
  worker.ready();
  assert.throws(() => worker.afterFork('nope' as unknown as () => void), { code: 'BW_ERR_INVALID_OPTION' });
  assert.throws(() => worker.onShutdown(undefined as unknown as () => void), { code: 'BW_ERR_INVALID_OPTION' });
  // Never run outside a worker: the primary does not fork itself. (Not an assert.fail inside the
  // callback: it would be caught and logged, never fail this test.)
  let ran = false;
  worker.afterFork(() => void (ran = true));
  // Callbacks run after the boot, on a later turn: several turns later, still not run.
  for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(ran, false, 'afterFork ran outside a supervised worker');
});
