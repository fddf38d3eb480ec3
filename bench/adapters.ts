/**
 * Requests per second of each example with the adapter and without it
 * (BELLWETHER_ADAPTER=off), 2 workers under the supervisor, a bounded
 * autocannon load on loopback. Runs alternate to share the machine's state.
 *
 * Then what the Express router costs a request it does not answer: the same
 * Express app with and without `app.use(bellwether())`, each in a process of
 * its own (contenders/express-app), requests handed to `app(req, res)` with
 * no network, so the difference is not lost in the load generator's noise.
 * The two take turns, one batch at a time.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../test/helpers/http.js';
import { LineChild } from './lines.js';
import { summarize, table } from './stats.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const contender = (name: string): string => new URL(`./contenders/${name}.js`, import.meta.url).pathname;

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

async function expressRouterCost(scale: number): Promise<string> {
  // Short batches, many rounds: the two batches of a round run close together, so a burst of other load weighs on both.
  const count = 1000;
  const rounds = Math.max(10, Math.round(200 * scale));
  const children: LineChild[] = [];
  const start = async (variant: 'with' | 'without'): Promise<LineChild> => {
    const app = new LineChild(process.execPath, [contender('express-app'), variant]);
    children.push(app);
    await app.until('ready', 15_000);
    return app;
  };
  /** Mean wall-clock ns per request of one batch. */
  const batch = async (app: LineChild): Promise<number> => {
    app.child.stdin!.write(`${count}\n`);
    const line = await app.line(120_000);
    const ns = Number(line);
    if (!Number.isFinite(ns)) throw new Error(`express-app: ${JSON.stringify(line)} instead of ns per request`);
    return ns;
  };
  try {
    const apps = { without: await start('without'), with: await start('with') };
    for (let warmup = 0; warmup < 10; warmup++) {
      await batch(apps.without);
      await batch(apps.with);
    }
    const without: number[] = [];
    const withRouter: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // ABBA order: a drift in the machine's speed weighs on both alike.
      if (round % 2 === 0) {
        without.push(await batch(apps.without));
        withRouter.push(await batch(apps.with));
      } else {
        withRouter.push(await batch(apps.with));
        without.push(await batch(apps.without));
      }
    }
    const a = summarize(without);
    const b = summarize(withRouter);
    const signed = (ns: number): string => `${ns >= 0 ? '+' : ''}${ns.toFixed(0)}`;
    /** The median over the rounds of `of(without, with)` of each round's pair. */
    const paired = (of: (off: number, on: number) => number): number => summarize(without.map((off, round) => of(off, withRouter[round]!))).median;
    return table(
      `Express ${expressVersion()}, no network: GET / (the app's own route) through app(req, res), one process per app, ${rounds} alternating rounds of ${count} requests, ns per request`,
      ['rounds', 'without the router', 'with app.use(bellwether())', 'added by the router', 'ratio'],
      [
        ['median (added, ratio: of the pairs)', a.median.toFixed(0), b.median.toFixed(0), signed(paired((off, on) => on - off)), paired((off, on) => on / off).toFixed(3)],
        // The least disturbed by other load on the machine.
        ['fastest', a.min.toFixed(0), b.min.toFixed(0), signed(b.min - a.min), (b.min / a.min).toFixed(3)],
      ],
    );
  } finally {
    for (const app of children) {
      app.child.stdin!.end();
      await Promise.race([app.exited, new Promise((r) => setTimeout(r, 5000))]);
      await app.kill();
    }
  }
}

function expressVersion(): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules/express/package.json'), 'utf8')) as { version: string }).version;
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
  return (
    table(
      'Requests per second, GET /, 2 workers under the supervisor, autocannon 20 connections on loopback',
      ['example', 'runs', 'without the adapter', 'with the adapter', 'ratio'],
      rows,
    ) +
    '\n' +
    (await expressRouterCost(scale))
  );
}
