import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Fixture, Fixtures } from './helpers/child.js';
import { freePort, getJson, getText } from './helpers/http.js';
import { RUNTIMES } from './helpers/runtimes.js';
import { parsePrometheusText, samplesOf } from './helpers/prometheus.js';
import { tempDir } from './helpers/temp.js';

const ROOT = new URL('../../', import.meta.url).pathname;

interface Snapshot {
  worker: { index: number; pid: number; ready: boolean };
  singletons: { name: string; leader: boolean; token: number | undefined; lastRun?: { outcome: string; durationMs?: number } }[];
}

/**
 * Asks /bellwether until every worker (by pid) has answered once, bounded in
 * requests. Right after a worker is killed, a request can be lost with it
 * (handed to the dying worker, or reset with its listener): those are retried.
 */
async function snapshots(port: number, workers: number): Promise<Map<number, Snapshot>> {
  const seen = new Map<number, Snapshot>();
  for (let i = 0; i < 400 && seen.size < workers; i++) {
    const s = await getJson<Snapshot>(port, '/bellwether', 1000).catch(() => undefined);
    if (s) seen.set(s.worker.pid, s);
  }
  return seen;
}

/** The one leader among the workers, asking until exactly one reports it (leadership may be moving). */
async function theLeader(port: number, workers: number, newerThan = 0): Promise<Snapshot> {
  for (let round = 0; round < 100; round++) {
    const leaders = [...(await snapshots(port, workers)).values()].filter((s) => s.singletons[0]?.leader);
    if (leaders.length === 1 && (leaders[0]!.singletons[0]!.token ?? 0) > newerThan) return leaders[0]!;
    assert.ok(leaders.length <= 1, `two workers report leadership: ${JSON.stringify(leaders)}`);
  }
  throw new Error('no single leader reported');
}

for (const example of ['express', 'fastify']) {
  for (const runtime of RUNTIMES) {
    describe(`examples/${example} under ${runtime.name}`, () => {
      test('endpoints, exactly one leader, takeover with a higher token after SIGKILL, cluster metrics, clean SIGTERM', async (t) => {
        const port = await freePort();
        // The Express example serves /bellwether and /metrics on a loopback port of their own (INTERNAL_PORT); the Fastify one on the app's.
        const internal = example === 'express' ? await freePort() : port;
        const fixtures = new Fixtures();
        t.after(() => fixtures.killAll());
        // As a user runs it, with its own lock directory so that test runs do not meet.
        const primary = fixtures.add(
          new Fixture(runtime.bin, [`${ROOT}dist/cli.js`, 'start', `${ROOT}examples/${example}/server.js`, '--workers', '4', '--shutdown-timeout', '5000'], `${example} example`, {
            PORT: String(port),
            ...(example === 'express' ? { INTERNAL_PORT: String(internal) } : {}),
            BELLWETHER_LOCK_DIR: path.join(tempDir(t), 'locks'),
          }),
        );
        await primary.stderrMatches(/4 workers ready/);

        assert.deepEqual(await getJson(port, '/healthz'), { live: true });
        assert.deepEqual(await getJson(port, '/readyz'), { ready: true });
        const hello = await getJson(port, '/');
        assert.equal(hello['hello'], 'world');
        if (internal !== port) {
          for (const url of ['/bellwether', '/metrics']) assert.equal((await getText(port, url)).status, 404, `${url} is not on the app's port`);
        }

        const leader = await theLeader(internal, 4);
        assert.equal(leader.singletons[0]!.name, 'health-reporter');
        const all = await snapshots(internal, 4);
        assert.equal(all.size, 4, 'every worker answered');
        assert.deepEqual([...all.values()].map((s) => s.worker.index).sort(), [0, 1, 2, 3]);

        if (example === 'fastify') {
          // The digest task ran in a worker thread of its leader (a few hundred ms of hashing), once per 10 s.
          let digest: Snapshot['singletons'][number] | undefined;
          for (let round = 0; round < 100 && digest?.lastRun?.outcome !== 'succeeded'; round++) {
            digest = [...(await snapshots(internal, 4)).values()].map((s) => s.singletons.find((j) => j.name === 'digest')!).find((j) => j.leader);
          }
          assert.equal(digest?.lastRun?.outcome, 'succeeded', JSON.stringify(digest));
          assert.ok((digest?.lastRun?.durationMs ?? 0) > 0);
        }

        const metrics = await getText(internal, '/metrics');
        assert.equal(metrics.status, 200);
        assert.match(metrics.type, /text\/plain/);
        const families = parsePrometheusText(metrics.body);
        const leaderSeries = samplesOf(families, 'bellwether_singleton_leader', { singleton: 'health-reporter' });
        assert.equal(leaderSeries.length, 4, 'one scrape shows every worker');
        assert.equal(leaderSeries.reduce((n, s) => n + s.value, 0), 1, 'exactly one leader in the metrics');
        assert.equal(samplesOf(families, 'bellwether_worker_restarts_total').length, 4);
        assert.equal(samplesOf(families, 'bellwether_worker_status_code').length, 4);

        process.kill(leader.worker.pid, 'SIGKILL');
        const next = await theLeader(internal, 4, leader.singletons[0]!.token);
        assert.notEqual(next.worker.pid, leader.worker.pid);

        // The primary's own series after the kill: that slot replaced once, every slot healthy again.
        const perSlot = (body: string, name: string): string[] =>
          samplesOf(parsePrometheusText(body), name)
            .map((s) => `${s.labels['worker']}=${s.value}`)
            .sort();
        const expected = [0, 1, 2, 3].map((i) => `${i}=${i === leader.worker.index ? 1 : 0}`);
        let after = '';
        for (let i = 0; i < 50 && perSlot(after, 'bellwether_worker_restarts_total').join() !== expected.join(); i++) after = (await getText(internal, '/metrics')).body;
        assert.deepEqual(perSlot(after, 'bellwether_worker_restarts_total'), expected);
        assert.deepEqual(perSlot(after, 'bellwether_worker_status_code'), ['0=0', '1=0', '2=0', '3=0']);

        primary.child.kill('SIGTERM');
        assert.deepEqual(await primary.exited, { code: 0, signal: null });
      });
    });
  }
}
