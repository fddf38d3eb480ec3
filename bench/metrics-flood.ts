/**
 * What a flood of /metrics scrapes costs beside /healthz on the same cluster:
 * the Express example with 8 workers under `bellwether start` (heartbeats every
 * 100 ms, silent after 1 s), autocannon on loopback for a few seconds against
 * each path in turn. Then the primary's collections (bellwether_metrics_collections_total)
 * against the scrapes, and whether the supervisor killed or lost a worker.
 */
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../test/helpers/http.js';
import { LineChild } from './lines.js';
import { p99Cell, table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const WORKERS = 8;
const CONNECTIONS = 64;

export async function metricsFlood(scale: number): Promise<string> {
  const seconds = Math.max(2, Math.round(5 * scale));
  const port = await freePort();
  const args = [path.join(ROOT, 'dist/cli.js'), 'start', path.join(ROOT, 'examples/express/server.js'), '--workers', String(WORKERS), '--heartbeat', '100', '--timeout', '1000', '--name', `bench-metrics-${port}`];
  const primary = new LineChild(process.execPath, args, { PORT: String(port), XDG_RUNTIME_DIR: os.tmpdir() }, 'pipe');
  let stderr = '';
  primary.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  try {
    const deadline = Date.now() + 30_000;
    while (!new RegExp(`${WORKERS} of ${WORKERS} workers ready`).test(stderr)) {
      if (Date.now() > deadline) throw new Error(`not ${WORKERS} workers ready within 30 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // A probe that comes after the cache interval (METRICS_CACHE_MS, 1 s, and a margin) makes a collection of its
    // own, counted in its answer: the collections between two such probes, minus the second probe's, are the flood's.
    const collections = async (): Promise<number> => {
      await new Promise((r) => setTimeout(r, 1000 + 300));
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return Number(/^bellwether_metrics_collections_total (\d+)$/m.exec(body)?.[1] ?? NaN);
    };
    const rows: (string | number)[][] = [];
    for (const url of ['/healthz', '/metrics']) {
      const before = await collections();
      const result = await autocannon({ url: `http://127.0.0.1:${port}${url}`, connections: CONNECTIONS, duration: seconds, pipelining: 1 });
      // The second probe's own collection is not the flood's.
      const during = (await collections()) - before - 1;
      rows.push([url, `${seconds} s`, result.requests.total, Math.round(result.requests.average), result.latency.p50, p99Cell(result.requests.total, result.latency.p99), result.non2xx + result.errors + result.timeouts, url === '/metrics' ? `${during} for ${result.requests.total} scrapes` : '-']);
    }
    const killed = (stderr.match(/killing worker/g) ?? []).length;
    const exited = (stderr.match(/exited/g) ?? []).length;
    return table(
      `GET /healthz and GET /metrics on the same cluster: examples/express with ${WORKERS} workers (--heartbeat 100 --timeout 1000), autocannon ${CONNECTIONS} connections on loopback, one path after the other; workers killed: ${killed}, exited: ${exited}`,
      ['path', 'load', 'requests', 'requests/s', 'p50 ms', 'p99 ms (above 100 requests)', 'errors', 'collections by the primary'],
      rows,
    );
  } finally {
    primary.child.kill('SIGTERM');
    await Promise.race([primary.exited, new Promise((r) => setTimeout(r, 10_000))]);
    await primary.kill();
  }
}
