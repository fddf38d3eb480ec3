/**
 * `bellwether start` as users run it: the default control socket (in the
 * lock directory), the status fields, a second supervisor of the same name
 * refused, SIGINT as a graceful stop.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { Fixture, Fixtures } from './helpers/child.js';
import { freePort, getJson } from './helpers/http.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

interface Status {
  pid: number;
  name: string;
  workers: { index: number; pid: number; state: string; code: number; restarts: number; uptime: number; rss: number }[];
}

for (const runtime of RUNTIMES) {
  describe(`bellwether start under ${runtime.name}`, () => {
    test('default socket in the lock directory, status fields, a second start of the same name refused, SIGINT stops gracefully', async (t) => {
      const lockDir = tempDir(t);
      const env = { BELLWETHER_LOCK_DIR: lockDir };
      const port = await freePort();
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const start = (name: string, workers: number, extraEnv: Record<string, string>): Fixture =>
        fixtures.add(new Fixture(runtime.bin, [CLI, 'start', fixture('http-app'), '--workers', String(workers), '--heartbeat', '100', '--timeout', '3000', '--name', name], `bellwether start ${name}`, { ...env, ...extraEnv }));
      const primary = start('api', 2, { PORT: String(port) });
      await bounded('workers ready', primary.stderrMatches(/2 of 2 workers ready/), 20_000);
      const socket = path.join(lockDir, 'supervisor-api.sock');
      assert.ok(fs.statSync(socket).isSocket(), 'the default socket is in the lock directory');

      const status = spawnSync(process.execPath, [CLI, 'status', '--name', 'api', '--json'], { encoding: 'utf8', env: { ...process.env, ...env } });
      assert.equal(status.status, 0, status.stderr);
      const parsed = JSON.parse(status.stdout) as Status;
      assert.equal(parsed.pid, primary.pid);
      assert.equal(parsed.name, 'api');
      assert.deepEqual(parsed.workers.map((w) => [w.index, w.state, w.code, w.restarts]), [[0, 'ready', 0, 0], [1, 'ready', 0, 0]]);
      for (const w of parsed.workers) {
        assert.ok(w.pid > 0 && w.uptime >= 0 && w.rss > 0, JSON.stringify(w));
      }
      const workers = parsed.workers.map((w) => w.pid);
      killAtEnd(t, workers);
      assert.ok([0, 1].includes(Number((await getJson(port))['index'])));

      const second = start('api', 1, { PORT: String(await freePort()) });
      assert.equal((await bounded('the second start exits', second.exited, 10_000)).code, 5);
      assert.equal(second.stderr, `bellwether: BW_ERR_ALREADY_RUNNING: supervisor api (pid ${primary.pid}) is already running with control socket ${socket}: stop it first, or give this one another --name\n`);

      primary.child.kill('SIGINT');
      assert.deepEqual(await bounded('the primary exits', primary.exited, 20_000), { code: 0, signal: null });
      assert.deepEqual(await gone(workers, 5000), []);
      assert.equal(fs.existsSync(socket), false, 'the socket is removed');
    });
  });
}
