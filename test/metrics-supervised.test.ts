/**
 * The cluster's Prometheus metrics under `bellwether start`, read with a
 * strict text-format parse: series kept apart when two workers share an
 * index, counters that outlive the workers that count, and a scrape that
 * waits only for the workers that serve metrics. Node and Bun.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bounded } from './helpers/bounded.js';
import { CLI } from './helpers/cli.js';
import { Fixture, Fixtures } from './helpers/child.js';
import { freePort, getText } from './helpers/http.js';
import { type Family, parsePrometheusText, samplesOf } from './helpers/prometheus.js';
import { RUNTIMES, type Runtime, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { wrk } from './helpers/wrk.js';
import { useZooKeeper } from './helpers/zookeeper.js';

function start(t: TestContext, runtime: Runtime, workers: number, env: Record<string, string>, app = 'express-metrics-app', args: string[] = []): { primary: Fixture; port: number } {
  const port = Number(env['PORT']);
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const primary = fixtures.add(
    new Fixture(runtime.bin, [CLI, 'start', fixture(app), '--workers', String(workers), '--heartbeat', '100', '--name', `metrics-${port}`, ...args], `bellwether start metrics (${runtime.name})`, {
      ...env,
      BELLWETHER_LOCK_DIR: tempDir(t),
    }),
  );
  return { primary, port };
}

/** Scrapes until `ready` holds (bounded): counts reach the primary in their own messages, beside a scrape. */
async function scrapeUntil(port: number, ready: (families: Map<string, Family>) => boolean): Promise<Map<string, Family>> {
  let families = await scrape(port);
  for (let i = 0; i < 50 && !ready(families); i++) families = await scrape(port);
  return families;
}

/** One scrape, parsed; a worker without metrics answers 404, so the scrape is asked again (bounded). */
async function scrape(port: number): Promise<Map<string, Family>> {
  for (let attempt = 0; ; attempt++) {
    const { status, body } = await getText(port, '/metrics');
    if (status === 200) return parsePrometheusText(body);
    if (status !== 404 || attempt >= 50) throw new Error(`GET /metrics: ${status}: ${body}`);
  }
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  const [first, ...more] = samplesOf(families, name, labels);
  assert.equal(more.length, 0, `one ${name} series for ${JSON.stringify(labels)}`);
  return first?.value;
}

function types(families: Map<string, Family>): Record<string, string> {
  return Object.fromEntries([...families.values()].filter((f) => f.name.startsWith('bellwether_')).map((f) => [f.name, f.type]));
}

/** Resolves once a connection to the port is accepted (a refused one is tried again), within ms. */
async function listening(port: number, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  for (;;) {
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (accepted) return;
    if (performance.now() > deadline) throw new Error(`nothing listens on port ${port} after ${ms} ms`);
    await sleep(20);
  }
}

/** A GET /slow that the worker holds until this side ends it. */
function holdSlowRequest(port: number): { end: () => void } {
  const request = http.get({ host: '127.0.0.1', port, path: '/slow', agent: false });
  request.on('error', () => {});
  return { end: () => request.destroy() };
}

for (const runtime of RUNTIMES) {
  describe(`cluster metrics under bellwether start (${runtime.name})`, () => {
    const zk = useZooKeeper();

    test('a rolling restart while the old worker still drains: both workers of slot 0 are shown, apart by pid, none summed', async (t) => {
      const { primary, port } = start(t, runtime, 1, { PORT: String(await freePort()), ZK_CONNECT: zk.ensemble.connectString() });
      const first = await primary.next('elected');
      await primary.stderrMatches(/1 of 1 workers ready/);
      const slow = holdSlowRequest(port);
      t.after(() => slow.end());
      await primary.next('slow-started');
      primary.child.kill('SIGHUP');
      // The old worker drains (held by /slow) once its replacement is ready.
      await primary.next('draining', (e) => e['pid'] === first['pid']);
      const families = await scrape(port);
      const connected = samplesOf(families, 'bellwether_zk_session_state', { worker: '0', state: 'connected' });
      assert.equal(connected.length, 2, 'one series per worker of slot 0');
      assert.deepEqual(connected.map((s) => s.value), [1, 1]);
      const pids = connected.map((s) => Number(s.labels['pid'])).sort();
      assert.ok(pids.includes(first['pid'] as number), 'the old worker is one of them');
      assert.notEqual(pids[0], pids[1]);
      const leaders = samplesOf(families, 'bellwether_singleton_leader', { worker: '0', singleton: 'metered' });
      assert.equal(leaders.length, 2);
      assert.equal(leaders.reduce((n, s) => n + s.value, 0), 1, 'exactly one leader');
      // Counters are the primary's, one series per slot.
      assert.equal(value(families, 'bellwether_singleton_leader_changes_total', { worker: '0', singleton: 'metered' }), 1);
      assert.equal(value(families, 'bellwether_zk_session_expiries_total', { worker: '0' }), 0);
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'answered' }), 2);
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'missing' }), 0);
      slow.end();
      // Drained, the old worker closes its singleton (a step-down, 'closed') and the new one leads, with a ballot of its
      // own: another host could have led between the two terms, so the primary measures no gap for this one.
      await primary.next('elected', (e) => e['pid'] !== first['pid']);
      const closedLeader = { worker: '0', singleton: 'metered', reason: 'closed' };
      const rolled = await scrapeUntil(port, (f) => value(f, 'bellwether_singleton_step_downs_total', closedLeader) === 1 && value(f, 'bellwether_singleton_leader_changes_total', { worker: '0', singleton: 'metered' }) === 2);
      assert.equal(value(rolled, 'bellwether_singleton_step_downs_total', closedLeader), 1);
      assert.equal(value(rolled, 'bellwether_singleton_step_downs_total', { ...closedLeader, reason: 'lost' }), 0);
      assert.equal(value(rolled, 'bellwether_singleton_handover_gap_seconds_count', { singleton: 'metered', seen_by: 'primary' }), 0);
      assert.equal(value(rolled, 'bellwether_zk_session_suspensions_total', { worker: '0' }), 0);
      primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 15_000), { code: 0, signal: null });
    });

    test('counters are counters (_total) and outlive a worker, a restart counted in the next scrape; the handover gaps between workers, as the primary sees them: the leader killed twice, a sibling takes over each time', async (t) => {
      // Restarts 300 ms after an exit: room for a scrape between the two.
      const { primary, port } = start(t, runtime, 2, { PORT: String(await freePort()), SINGLETON_LOCK_DIR: tempDir(t) }, 'express-metrics-app', ['--restart-delay', '300']);
      const first = await primary.next('elected');
      await primary.stderrMatches(/2 of 2 workers ready/);
      const [killed, sibling] = first['index'] === 0 ? ['0', '1'] : ['1', '0'];
      const of = (worker: string): Record<string, string> => ({ worker, singleton: 'metered' });
      const gaps = { singleton: 'metered', seen_by: 'primary' };
      const before = await scrape(port);
      assert.deepEqual(types(before), {
        bellwether_singleton_leader: 'gauge',
        bellwether_singleton_leader_changes_total: 'counter',
        bellwether_singleton_last_run_seconds: 'gauge',
        bellwether_singleton_runs_total: 'counter',
        bellwether_singleton_run_failures_total: 'counter',
        bellwether_singleton_step_downs_total: 'counter',
        bellwether_worker_restarts_total: 'counter',
        bellwether_worker_status_code: 'gauge',
        bellwether_metrics_workers: 'gauge',
        bellwether_metrics_collections_total: 'counter',
        bellwether_singleton_handover_gap_seconds: 'histogram',
      });
      assert.equal(value(before, 'bellwether_singleton_leader_changes_total', of(killed)), 1);
      assert.equal(value(before, 'bellwether_worker_restarts_total', { worker: killed }), 0);
      assert.equal(value(before, 'bellwether_singleton_leader', { worker: killed, pid: String(first['pid']) }), 1);
      assert.equal(value(before, 'bellwether_singleton_step_downs_total', { ...of(killed), reason: 'lost' }), 0, 'shown from the start, at 0');
      assert.equal(value(before, 'bellwether_singleton_handover_gap_seconds_count', gaps), 0, 'shown from the start, at 0');
      assert.equal(samplesOf(before, 'bellwether_singleton_handover_gap_seconds_count', { seen_by: 'process' }).length, 0, "the workers' own view is left to the primary's");

      // The sibling, waiting on the lock, takes over at once; the killed slot's replacement boots meanwhile.
      process.kill(first['pid'] as number, 'SIGKILL');
      const second = await primary.next('elected', (e) => e['pid'] !== first['pid']);
      assert.equal(String(second['index']), sibling, 'the sibling took over');
      // A scrape between the exit and the restart, and one right after the restart (within the first's 1 s): the restart is in it.
      await primary.stderrMatches(new RegExp(`worker ${killed} exited \\(SIGKILL\\)`));
      assert.equal(value(await scrape(port), 'bellwether_worker_restarts_total', { worker: killed }), 0);
      await primary.stderrMatches(new RegExp(`worker ${killed} restarted`));
      assert.equal(value(await scrape(port), 'bellwether_worker_restarts_total', { worker: killed }), 1, 'not the cached 0');
      // Once the replacement is attached it contends too: the sibling, killed in turn, hands the job back to the killed slot.
      await primary.next('attached', (e) => e['pid'] !== first['pid'] && String(e['index']) === killed);
      const oneGap = await scrapeUntil(port, (families) => value(families, 'bellwether_singleton_handover_gap_seconds_count', gaps) === 1);
      assert.equal(value(oneGap, 'bellwether_singleton_handover_gap_seconds_count', gaps), 1);
      process.kill(second['pid'] as number, 'SIGKILL');
      const third = await primary.next('elected', (e) => e['pid'] !== first['pid'] && e['pid'] !== second['pid']);
      assert.equal(String(third['index']), killed);
      // The port is closed while no worker listens: the replacement may listen only after its election (seen on Node 22
      // and 24). It counts its election and run before it serves: a scrape may come first, so ask until they are counted (bounded).
      await listening(port, 10_000);
      const after = await scrapeUntil(
        port,
        (families) => value(families, 'bellwether_singleton_leader_changes_total', of(killed)) === 2 && value(families, 'bellwether_singleton_handover_gap_seconds_count', gaps) === 2,
      );
      assert.equal(value(after, 'bellwether_singleton_leader_changes_total', of(killed)), 2, 'kept across the restart, and counted on');
      assert.equal(value(after, 'bellwether_singleton_leader_changes_total', of(sibling)), 1);
      assert.equal(value(after, 'bellwether_worker_restarts_total', { worker: killed }), 1);
      assert.equal(value(after, 'bellwether_singleton_runs_total', of(killed)), 2, 'one run per term, counted across the restart');
      assert.equal(value(after, 'bellwether_singleton_run_failures_total', of(killed)), 0);
      assert.equal(value(after, 'bellwether_singleton_leader', { worker: killed, pid: String(third['pid']) }), 1);
      assert.equal(samplesOf(after, 'bellwether_singleton_leader', { pid: String(first['pid']) }).length, 0, 'the dead worker is gone from the gauges');
      // A killed worker does not step down: its term ends with its exit, which the gaps count from.
      assert.equal(samplesOf(after, 'bellwether_singleton_step_downs_total').reduce((n, s) => n + s.value, 0), 0);
      // Two gaps, each from the primary seeing a leader's exit to seeing the next one's term begin: a few ms for a waiting sibling.
      const sum = value(after, 'bellwether_singleton_handover_gap_seconds_sum', gaps)!;
      t.diagnostic(`handover gaps seen by the primary: ${Math.round(sum * 1000)} ms for two`);
      assert.ok(sum > 0, `gap sum ${sum} s`);
      assert.equal(value(after, 'bellwether_singleton_handover_gap_seconds_bucket', { ...gaps, le: '1' }), 2, `both within 1 s (sum ${sum} s)`);
      // Many scrapes at once: each answered, with one listener in the worker for all of them.
      const many = await Promise.all(Array.from({ length: 30 }, () => scrape(port)));
      assert.ok(many.every((families) => samplesOf(families, 'bellwether_worker_restarts_total').length === 2));
      assert.doesNotMatch(primary.stderr, /MaxListenersExceeded/);
      primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 15_000), { code: 0, signal: null });
    });

    test('two boards in one worker (two apps) listing the same singleton: one election counted once, one leader shown', async (t) => {
      const { primary, port } = start(t, runtime, 1, { PORT: String(await freePort()), PORT2: String(await freePort()), SINGLETON_LOCK_DIR: tempDir(t), SAME_SINGLETON: '1' }, 'two-boards-app');
      await primary.next('attached');
      const families = await scrapeUntil(port, (f) => value(f, 'bellwether_singleton_leader_changes_total', { worker: '0', singleton: 'a' }) === 1);
      assert.equal(primary.count('elected'), 1);
      assert.equal(value(families, 'bellwether_singleton_leader_changes_total', { worker: '0', singleton: 'a' }), 1);
      assert.equal(value(families, 'bellwether_singleton_leader', { worker: '0', singleton: 'a' }), 1, 'shown by one board, not summed over two');
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'answered' }), 2, 'both boards answered');
    });

    test('two boards in one worker: one closes, the other still serves its series and is still asked', async (t) => {
      const port2 = await freePort();
      const { primary } = start(t, runtime, 1, { PORT: String(await freePort()), PORT2: String(port2), SINGLETON_LOCK_DIR: tempDir(t) }, 'two-boards-app');
      await primary.next('attached');
      assert.equal((await getText(port2, '/close-first')).body, 'closed');
      const families = await scrape(port2);
      assert.equal(samplesOf(families, 'bellwether_singleton_leader', { singleton: 'b' }).length, 1, "the open board's gauge");
      assert.equal(samplesOf(families, 'bellwether_singleton_leader', { singleton: 'a' }).length, 0, "the closed board's is gone");
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'answered' }), 1);
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'missing' }), 0);
    });

    test('a flood of scrapes on every worker: a few collections for all of them, every scrape answered, no worker taken for silent', async (t) => {
      // Heartbeats every 100 ms, silent after 1 s: a primary busy with scrapes would miss them.
      const { primary, port } = start(t, runtime, 4, { PORT: String(await freePort()), SINGLETON_LOCK_DIR: tempDir(t) }, 'express-metrics-app', ['--timeout', '1000']);
      await primary.stderrMatches(/4 of 4 workers ready/);
      const seconds = 2;
      const flood = await wrk(`http://127.0.0.1:${port}/metrics`, { seconds, connections: 32 });
      t.diagnostic(`${flood.requests} scrapes in ${seconds} s`);
      assert.deepEqual({ socketErrors: flood.connect + flood.read + flood.write + flood.timeout, non2xx: flood.non2xx }, { socketErrors: 0, non2xx: 0 });
      assert.doesNotMatch(primary.stderr, /killing worker|exited/, 'no worker was killed or exited');
      const families = await scrape(port);
      const collections = value(families, 'bellwether_metrics_collections_total', {})!;
      t.diagnostic(`${collections} collections by the primary`);
      // One collection per cache interval (1 s) at most, plus one for each counter that changed: far fewer than the scrapes.
      assert.ok(collections >= 1 && collections <= seconds + 4, `${collections} collections for ${flood.requests} scrapes`);
      assert.ok(flood.requests > collections * 20, `${flood.requests} scrapes`);
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'missing' }), 0);
      assert.equal(primary.count('elected'), 1, 'the singleton never moved');
      primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 15_000), { code: 0, signal: null });
    });

    test("a board's close() while its scrape waits for the primary: the cluster's answer at once; after close() its own series at once, without asking", async (t) => {
      const { primary } = start(t, runtime, 1, { PORT: String(await freePort()) }, 'board-close-scrape');
      await primary.next('done');
      const timed = primary.events.filter((e) => e.event === 'timed');
      t.diagnostic(JSON.stringify(timed));
      // Without an answer the scrape would wait 3 s: 1 s is far from both.
      assert.deepEqual(
        Object.fromEntries(timed.map((e) => [e['label'], { fast: (e['ms'] as number) < 1000, cluster: e['cluster'] }])),
        { open: { fast: true, cluster: true }, 'closed-mid-request': { fast: true, cluster: true }, 'after-close': { fast: true, cluster: false } },
      );
      primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 15_000), { code: 0, signal: null });
    });

    test('a collection that fails is shared like one that succeeds: sequential scrapes for 500 ms cost one or two collections and as many warn lines, each scrape answered', async (t) => {
      const { primary, port } = start(t, runtime, 2, { PORT: String(await freePort()) }, 'bad-report-app');
      await primary.stderrMatches(/2 of 2 workers ready/);
      const started = performance.now();
      let scrapes = 0;
      for (; performance.now() - started < 500 && scrapes < 2000; scrapes++) assert.equal((await getText(port, '/metrics')).status, 200, "the worker's own series");
      const failures = primary.stderr.match(/metrics collection failed/g)?.length ?? 0;
      t.diagnostic(`${scrapes} sequential scrapes in 500 ms: ${failures} failed collections logged`);
      assert.ok(failures >= 1 && failures <= 2, `${failures} failed collections (warn lines) for ${scrapes} scrapes`);
      primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 15_000), { code: 0, signal: null });
    });

    test('a scrape waits only for the workers that serve metrics, and not for one whose event loop is blocked: it is counted missing', async (t) => {
      const lockDir = tempDir(t);
      const onlyZero = start(t, runtime, 2, { PORT: String(await freePort()), SINGLETON_LOCK_DIR: lockDir, METRICS_WORKERS: '0' });
      await onlyZero.primary.stderrMatches(/2 of 2 workers ready/);
      const withoutOne = await scrape(onlyZero.port);
      assert.equal(value(withoutOne, 'bellwether_metrics_workers', { state: 'answered' }), 1, 'worker 1 serves no metrics: not asked');
      assert.equal(value(withoutOne, 'bellwether_metrics_workers', { state: 'missing' }), 0);
      assert.equal(samplesOf(withoutOne, 'bellwether_worker_restarts_total').length, 2, 'the primary still shows both slots');
      onlyZero.primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', onlyZero.primary.exited, 15_000), { code: 0, signal: null });

      // Worker 1 blocks its event loop for 1.5 s on each collection (past the primary's 500 ms, within the requester's 3 s).
      const blocked = start(t, runtime, 2, { PORT: String(await freePort()), SINGLETON_LOCK_DIR: lockDir, BLOCK_ON_COLLECT_MS: '1500' });
      await blocked.primary.stderrMatches(/2 of 2 workers ready/);
      const families = await scrape(blocked.port);
      const blocking = await blocked.primary.next('blocking');
      // The requester's own fallback (no answer from the primary within 3 s) has no primary series: these say the primary answered.
      assert.equal(samplesOf(families, 'bellwether_worker_restarts_total').length, 2);
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'answered' }), 1);
      assert.equal(value(families, 'bellwether_metrics_workers', { state: 'missing' }), 1);
      assert.equal(samplesOf(families, 'bellwether_singleton_leader', { pid: String(blocking['pid']) }).length, 0, 'the blocked worker is left out');
      assert.equal(samplesOf(families, 'bellwether_singleton_leader', { worker: '0' }).length, 1);
      blocked.primary.child.kill('SIGTERM');
      assert.deepEqual(await bounded('the primary exits', blocked.primary.exited, 15_000), { code: 0, signal: null });
    });
  });
}

test("the primary's handover gaps also count a singleton that no board lists (the app runs it itself), once a board serves metrics", async () => {
  const { ClusterMetrics } = (await import(new URL('../../dist/cluster/cluster-metrics.js', import.meta.url).href)) as {
    ClusterMetrics: new () => { onMessage(from: unknown, message: unknown, answer: (id: string) => void): void; scrape(slots: () => unknown[]): Promise<string | null> };
  };
  const metrics = new ClusterMetrics();
  // Workers as the primary holds them: not connected, so a scrape asks none of them.
  const [a, b] = [1, 2].map((id) => ({ id, isDead: () => false, isConnected: () => false, send() {} }));
  const from = (worker: unknown, index: number): unknown => ({ worker, index });
  metrics.onMessage(from(a, 0), { bellwether: 'metrics-on', board: 'board-a', singletons: [], zk: false }, () => {});
  // prom-client loads asynchronously: the histogram exists from the first scrape on.
  await metrics.scrape(() => []);
  metrics.onMessage(from(a, 0), { bellwether: 'metrics-term', singleton: 'unlisted', fence: '5', leading: true }, () => {});
  metrics.onMessage(from(a, 0), { bellwether: 'metrics-term', singleton: 'unlisted', fence: '5', leading: false }, () => {});
  metrics.onMessage(from(b, 1), { bellwether: 'metrics-term', singleton: 'unlisted', fence: '6', leading: true }, () => {});
  const families = parsePrometheusText((await metrics.scrape(() => []))!);
  const [count] = samplesOf(families, 'bellwether_singleton_handover_gap_seconds_count', { singleton: 'unlisted', seen_by: 'primary' });
  assert.equal(count?.value, 1, 'one gap: generation 5 ended, 6 began');
});
