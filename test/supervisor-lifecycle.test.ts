/**
 * A primary's own lifetime: it must not outlive its purpose. With every
 * slot given up it has nothing to serve; with its parent gone (when asked)
 * it has nobody to stop it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { bounded } from './helpers/bounded.js';
import { CLI, bellwether } from './helpers/cli.js';
import { Fixture, Fixtures, startFixture } from './helpers/child.js';
import { freePort } from './helpers/http.js';
import { gone, killAtEnd } from './helpers/processes.js';
import { RUNTIMES, fixture, node } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const BROKEN = fixture('mini-worker-broken');
const HTTP_APP = fixture('http-app');


for (const runtime of RUNTIMES) {
  describe(`a primary with nothing left to run (${runtime.name})`, () => {
    test('bellwether start: every slot given up -> it says why and exits with code 4', async (t) => {
      const socket = path.join(tempDir(t), 'control.sock');
      const result = await bellwether(['start', BROKEN, '--workers', '2', '--restart-delay', '10', '--max-restarts', '2', '--socket', socket], { runtime });
      assert.equal(result.code, 4, result.stderr);
      assert.match(result.stderr, /BW_ERR_CRASH_LOOP: worker slot 0/);
      assert.match(result.stderr, /BW_ERR_CRASH_LOOP: worker slot 1/);
      assert.match(result.stderr, /every worker slot \(2\) was given up after crash loops; nothing left to serve, exiting with code 4/);
    });

    test("Supervisor: 'exhausted' once the last slot is given up, with every slot's state", async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const options = { exec: BROKEN, workers: 2, timeout: 3000, heartbeat: 100, restart: { initialDelay: 10, maxRestarts: 2 } };
      const primary = fixtures.add(startFixture(runtime, fixture('supervisor-primary'), [JSON.stringify(options)]));
      const exhausted = await bounded('exhausted', primary.next('exhausted'), 20_000);
      assert.deepEqual((exhausted['slots'] as { state: string }[]).map((s) => s.state), ['given-up', 'given-up']);
      assert.equal(primary.count('error'), 2, 'one BW_ERR_CRASH_LOOP per slot');
    });

    test('--stop-with-parent: the parent SIGKILLed -> the primary stops its workers and exits', async (t) => {
      const dir = tempDir(t);
      const socket = path.join(dir, 'control.sock');
      const port = await freePort();
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      // A parent that starts the primary and waits: the shape of a test runner or a wrapper script.
      const parent = fixtures.add(
        new Fixture('sh', ['-c', `"$0" "$1" start "$2" --workers 2 --heartbeat 100 --timeout 3000 --socket "$3" --stop-with-parent & echo "primary $!"; wait`, runtime.bin, CLI, HTTP_APP, socket], 'parent sh', { PORT: String(port) }),
      );
      const primaryPid = Number(String((await bounded('primary pid', parent.next('output'), 10_000))['line']).split(' ')[1]);
      await bounded('workers ready', parent.stderrMatches(/2 of 2 workers ready/), 20_000);
      const status = await bellwether(['status', '--socket', socket, '--json']);
      const workers = (JSON.parse(status.stdout) as { workers: { pid: number }[] }).workers.map((w) => w.pid);
      assert.equal(workers.length, 2);
      killAtEnd(t, [primaryPid, ...workers]);
      process.kill(parent.pid, 'SIGKILL');
      assert.deepEqual(await gone([primaryPid, ...workers], 5000), [], 'primary and workers gone after their parent');
      await bounded('primary output closed', parent.exited, 5000);
      assert.match(parent.stderr, /parent process \d+ is gone \(--stop-with-parent \/ --parent-pid\); stopping/);
    });

    test('--parent-pid: a parent that is gone before the primary even loaded is noticed at start', async (t) => {
      const port = await freePort();
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      // The shell leaves at once: by the time the primary runs, its parent is already gone.
      const parent = fixtures.add(
        new Fixture('sh', ['-c', `"$0" "$1" start "$2" --workers 2 --heartbeat 100 --timeout 3000 --socket "$3" --parent-pid "$$" & echo "primary $!"`, runtime.bin, CLI, HTTP_APP, path.join(tempDir(t), 'control.sock')], 'parent sh', { PORT: String(port) }),
      );
      const primaryPid = Number(String((await bounded('primary pid', parent.next('output'), 10_000))['line']).split(' ')[1]);
      killAtEnd(t, [primaryPid]);
      // The output pipe closes once the primary and every worker it forked are gone.
      await bounded('primary and workers gone', parent.exited, 10_000);
      assert.deepEqual(await gone([primaryPid], 5000), []);
      assert.match(parent.stderr, /parent process \d+ is gone/);
    });

    test('SIGTTOU away the last serving slot, the others given up -> exhausted, exit code 4', async (t) => {
      const port = await freePort();
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const primary = fixtures.add(
        new Fixture(runtime.bin, [CLI, 'start', HTTP_APP, '--workers', '2', '--heartbeat', '100', '--restart-delay', '10', '--max-restarts', '1', '--socket', path.join(tempDir(t), 'c.sock')], 'bellwether start', {
          PORT: String(port),
          CRASH_INDEX: '0',
        }),
      );
      await bounded('crash loop', primary.stderrMatches(/BW_ERR_CRASH_LOOP: worker slot 0/), 20_000);
      await bounded('slot 1 serves', primary.stderrMatches(/1 of 2 workers ready/), 20_000);
      process.kill(primary.pid, 'SIGTTOU');
      assert.deepEqual(await bounded('primary exit', primary.exited, 20_000), { code: 4, signal: null }, primary.stderr);
      assert.match(primary.stderr, /every worker slot \(1\) was given up/);
    });
  });
}

describe('bellwether status shows given-up slots', () => {
  test('one slot crash-loops, the other serves: status lists it as given-up and says so', async (t) => {
    const dir = tempDir(t);
    const socket = path.join(dir, 'control.sock');
    const port = await freePort();
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const primary = fixtures.add(
      new Fixture(node.bin, [CLI, 'start', HTTP_APP, '--workers', '2', '--heartbeat', '100', '--restart-delay', '10', '--max-restarts', '1', '--socket', socket], 'bellwether start', {
        PORT: String(port),
        CRASH_INDEX: '1',
      }),
    );
    await bounded('crash loop', primary.stderrMatches(/BW_ERR_CRASH_LOOP: worker slot 1/), 20_000);
    const status = await bellwether(['status', '--socket', socket]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^0\s+\d+\s+ready/m);
    assert.match(status.stdout, /^1\s+-\s+given-up/m);
    assert.match(status.stdout, /given up after crash loops \(not restarted\): slot 1; see the primary's log/);
    process.kill(primary.pid, 'SIGTERM');
    assert.deepEqual(await bounded('primary exit', primary.exited, 20_000), { code: 0, signal: null }, 'one slot still serves: the primary stays until stopped');
  });
});
