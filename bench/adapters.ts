/**
 * Requests per second of each example with the adapter and without it
 * (BELLWETHER_ADAPTER=off), 2 workers under the supervisor, a bounded
 * autocannon load on loopback. Runs alternate to share the machine's state.
 */
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../test/helpers/http.js';
import { LineChild } from './lines.js';
import { table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;

async function rps(example: string, adapter: boolean, seconds: number): Promise<number> {
  const port = await freePort();
  const primary = new LineChild(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'start', path.join(ROOT, `examples/${example}/server.js`), '--workers', '2', '--shutdown-timeout', '3000', '--name', `bench-adapters-${port}`], {
    PORT: String(port),
    XDG_RUNTIME_DIR: os.tmpdir(),
    BELLWETHER_ADAPTER: adapter ? 'on' : 'off',
  });
  try {
    // Ready: the first successful request.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`${example} (adapter ${adapter}) did not answer within 15 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const result = await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 20, duration: seconds, pipelining: 1 });
    if (result.non2xx || result.errors) throw new Error(`${example}: ${result.non2xx} non-2xx, ${result.errors} errors`);
    return result.requests.average;
  } finally {
    primary.child.kill('SIGTERM');
    await Promise.race([primary.exited, new Promise((r) => setTimeout(r, 5000))]);
    await primary.kill();
  }
}

export async function adapters(scale: number): Promise<string> {
  const seconds = Math.max(2, Math.round(8 * scale));
  const rounds = Math.max(1, Math.round(3 * scale));
  const rows: (string | number)[][] = [];
  for (const example of ['express', 'fastify']) {
    const withAdapter: number[] = [];
    const without: number[] = [];
    for (let round = 0; round < rounds; round++) {
      without.push(await rps(example, false, seconds));
      withAdapter.push(await rps(example, true, seconds));
    }
    const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
    rows.push([example, `${rounds} x ${seconds} s`, Math.round(mean(without)), Math.round(mean(withAdapter)), (mean(withAdapter) / mean(without)).toFixed(3)]);
  }
  return table(
    'Requests per second, GET /, 2 workers under the supervisor, autocannon 20 connections on loopback',
    ['example', 'runs', 'without the adapter', 'with the adapter', 'ratio'],
    rows,
  );
}
