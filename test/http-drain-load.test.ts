/**
 * Zero failed requests through every planned worker stop, under keep-alive
 * load (wrk: 20 connections, each with a request always outstanding, from
 * 1.5 s before the stop to 1.5 s after it is done), with
 * no shutdown code in the app: rolling restart of 2 and of 4 workers, SIGTTOU,
 * an unhealthy worker replaced, SIGTERM with a slow request in flight, the
 * Express (5) and Fastify examples, and an Express 4 app. `bellwether start`
 * as users run it, under Node and under Bun.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { EXAMPLES, awaitedLater, rollingRestart, startCluster, underLoad } from './helpers/drain-cluster.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';

for (const runtime of RUNTIMES) {
  describe(`zero failed requests under keep-alive load, with no shutdown code in the app (${runtime.name})`, () => {
    const plain = fixture('plain-http-app');

    test('rolling restart of 2 workers (SIGHUP)', (t) => rollingRestart(t, runtime, plain, 2));

    test('rolling restart of 4 workers (SIGHUP)', (t) => rollingRestart(t, runtime, plain, 4));

    test('one worker less (SIGTTOU)', async (t) => {
      const cluster = await startCluster(t, runtime, plain, 2);
      const [, last] = cluster.pids();
      const exited = awaitedLater(cluster.primary.stderrMatches(/worker 1 exited/));
      await underLoad(cluster, () => process.kill(cluster.primary.pid, 'SIGTTOU'), exited);
      await bounded('worker 1 exits', exited, 10_000);
      assert.equal(cluster.pids().length, 1);
      assert.deepEqual(await gone([last!], 5000), []);
    });

    test('an unhealthy worker replaced (SIGTERM, then SIGKILL after killTimeout)', async (t) => {
      const cluster = await startCluster(t, runtime, plain, 2);
      const before = cluster.pids();
      const killed = awaitedLater(cluster.primary.stderrMatches(/killing worker \d \(pid \d+\): unhealthy/));
      const restarted = awaitedLater(cluster.primary.stderrMatches(/worker \d restarted \(pid \d+\)/));
      await underLoad(cluster, () => void http.get({ host: '127.0.0.1', port: cluster.port, path: '/unhealthy', agent: false }).on('error', () => {}), restarted);
      await bounded('the unhealthy worker is killed', killed, 5000);
      const replaced = before.filter((pid) => !cluster.pids().includes(pid));
      assert.equal(replaced.length, 1, `one worker replaced: ${before} -> ${cluster.pids()}`);
      killAtEnd(t, cluster.pids());
    });

    test('SIGTERM with a slow request in flight: it completes, then the primary exits', async (t) => {
      const cluster = await startCluster(t, runtime, plain, 2);
      const workers = cluster.pids();
      const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: cluster.port, path: '/slow?ms=1500' }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .on('error', reject);
      });
      await cluster.primary.next('slow-started');
      cluster.primary.child.kill('SIGTERM');
      const answer = await bounded('the slow response', response, 10_000);
      assert.equal(answer.status, 200);
      assert.ok(workers.includes(Number((JSON.parse(answer.body) as { pid: number }).pid)));
      assert.deepEqual(await bounded('the primary exits', cluster.primary.exited, 10_000), { code: 0, signal: null });
      assert.deepEqual(await gone(workers, 5000), []);
    });

    test('rolling restart of the Express example (Express 5)', (t) => rollingRestart(t, runtime, `${EXAMPLES}express/server.js`, 2));

    test('rolling restart of an Express 4 app', (t) => rollingRestart(t, runtime, fixture('express4-app'), 2));

    test('rolling restart of the Fastify example', (t) => rollingRestart(t, runtime, `${EXAMPLES}fastify/server.js`, 2));
  });
}
