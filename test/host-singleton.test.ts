import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { describe, test } from 'node:test';
import { type Fixture, Fixtures, startFixture } from './helpers/child.js';
import { checkFenceLog } from './helpers/fence-log.js';
import { waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, type Runtime, bun, fixture, mixName, node, selected } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { FLOCK } from './helpers/tools.js';

const CONTENDER = fixture('host-contender');

/** Each mix whose runtimes are all selected (BW_TEST_RUNTIMES=node leaves only the first). */
const MIXES: Runtime[][] = [
  [node, node, node, node, node],
  [bun, bun, bun, bun, bun],
  [node, bun, node, bun, node],
].filter((mix) => mix.every((r) => RUNTIMES.includes(r)));
const FLOCK_MIX = [node, bun, node, bun].map(selected);

describe('host singleton across processes', () => {
  for (const runtimes of MIXES) {
    test(`${mixName(runtimes)}: 5 contenders, 20 SIGKILLs of the holder: one holder at a time, tokens increase`, async (t) => {
      const dir = tempDir(t);
      const logFile = path.join(dir, 'fence.log');
      const lockFile = path.join(dir, 'job.lock');
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      let spawned = 0;
      const spawnContender = (): Fixture =>
        fixtures.add(startFixture(runtimes[spawned++ % runtimes.length]!, CONTENDER, [dir, 'job', logFile]));

      let live = runtimes.map(() => spawnContender());
      let holder = await Promise.any(live.map((f) => f.next('running').then(() => f)));
      const tokens = [Number((await holder.next('running'))['token'])];

      for (let kill = 0; kill < 20; kill++) {
        // Everyone else is really queued in the kernel before the holder dies.
        await Promise.all(live.map((f) => f.next('contending')));
        await waitForBlockedWaiters(lockFile, live.length - 1);
        const others = live.filter((f) => f !== holder);
        const seen = new Map(others.map((f) => [f, f.events.length]));
        await holder.kill('SIGKILL');
        const next = await Promise.any(others.map((f) => f.next('running', () => true, seen.get(f)).then(() => f)));
        const token = Number(next.events.findLast((e) => e.event === 'running')!['token']);
        assert.ok(token > tokens.at(-1)!, `token ${token} after ${tokens.at(-1)}`);
        tokens.push(token);
        live = [...others, spawnContender()];
        holder = next;
      }

      await Promise.all(live.map((f) => f.next('contending')));
      await waitForBlockedWaiters(lockFile, live.length - 1);
      const elected = fixtures.all.reduce((sum, f) => sum + f.count('elected'), 0);
      assert.equal(elected, 21, 'one election per takeover, no more');
      assert.deepEqual(checkFenceLog(logFile), tokens);
    });
  }

  test(`flock(1) holding the file keeps ${mixName(FLOCK_MIX)} contenders waiting; release lets exactly one in`, async (t) => {
    const dir = tempDir(t);
    const logFile = path.join(dir, 'fence.log');
    const lockFile = path.join(dir, 'job.lock');
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    // An operator pausing the job: flock(1) holds the lock until its command ends.
    const operator = spawn(FLOCK, ['-o', lockFile, '-c', 'echo held; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.after(() => operator.kill('SIGKILL'));
    await once(operator.stdout, 'data');

    const contenders = FLOCK_MIX.map((r) => fixtures.add(startFixture(r, CONTENDER, [dir, 'job', logFile])));
    await Promise.all(contenders.map((f) => f.next('contending')));
    await waitForBlockedWaiters(lockFile, 4);
    assert.equal(contenders.filter((f) => f.count('elected') > 0).length, 0, 'nobody runs while flock(1) holds the lock');

    operator.stdin.end();
    const winner = await Promise.any(contenders.map((f) => f.next('running').then(() => f)));
    await waitForBlockedWaiters(lockFile, 3);
    assert.equal(contenders.filter((f) => f.count('elected') > 0).length, 1);

    // And the other way round: flock(1) cannot take the file from a holder.
    const probe = spawn(FLOCK, ['-n', lockFile, 'true']);
    const [code] = await once(probe, 'exit');
    assert.equal(code, 1, 'flock -n fails while a bellwether process holds the lock');

    winner.send('close');
    await winner.next('closed');
    await Promise.any(contenders.filter((f) => f !== winner).map((f) => f.next('running')));
    assert.deepEqual(checkFenceLog(logFile), [1, 2]);
  });
});
