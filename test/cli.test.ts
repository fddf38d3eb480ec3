import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { Fixtures, startFixture } from './helpers/child.js';
import { parentOf } from './helpers/processes.js';
import { flockRequests, waitForBlockedWaiters } from './helpers/proc-locks.js';
import { bun, fixture, node, selected } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { FLOCK } from './helpers/tools.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('bellwether lock <name>: free, then held by a process outside bellwether (flock(1): no token stored), two queued behind it, never reset while held', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'job.lock');
  assert.deepEqual(JSON.parse(cli('lock', 'job', '--lock-dir', dir, '--json').stdout), { file, held: false, waiting: 0, waitingPids: [] });
  assert.equal(cli('lock', 'job', '--lock-dir', dir).status, 3);

  // A holder from outside: flock(1), as an operator pausing the job.
  const operator = spawn(FLOCK, ['-o', file, '-c', 'echo held; exec cat']);
  t.after(() => operator.kill('SIGKILL'));
  await once(operator.stdout, 'data');
  const held = cli('lock', 'job', '--lock-dir', dir);
  assert.equal(held.status, 0);
  assert.match(held.stdout, /^job: running \(lock held\); 0 waiting; never held/);
  // Two more flock(1)s queue behind it: the kernel lists them as blocked, with their pids.
  const waiters = [1, 2].map(() => spawn(FLOCK, ['-o', file, 'true'], { stdio: 'ignore' }));
  t.after(() => waiters.forEach((waiter) => waiter.kill('SIGKILL')));
  await waitForBlockedWaiters(file, 2);
  const pids = waiters.map((waiter) => waiter.pid!).sort();
  const queued = JSON.parse(cli('lock', 'job', '--lock-dir', dir, '--json').stdout);
  assert.deepEqual({ ...queued, waitingPids: [...queued.waitingPids].sort() }, { file, held: true, waiting: 2, waitingPids: pids });
  // The first line as before the pids were listed (scripts read it); the pids on a line of their own.
  const listed = /^job: running \(lock held\); 2 waiting; never held\n {2}\S+\n {2}waiting: pids (\d+), (\d+)\n$/.exec(cli('lock', 'job', '--lock-dir', dir).stdout);
  assert.deepEqual(listed?.slice(1).map(Number).sort(), pids);
  const reset = cli('lock', 'job', '--lock-dir', dir, '--reset');
  assert.equal(reset.status, 5, 'never reset while held');
  assert.equal(reset.stderr, `bellwether: BW_ERR_ALREADY_RUNNING: job is running (its lock ${path.join(dir, 'job.lock')} is held): fencing count not reset; stop it first\n`);
});

test('bellwether lock <name>: a bellwether holder\'s pid and token, the waiters; --reset once it is free', async (t) => {
  const dir = tempDir(t);
  const fixtures = new Fixtures();
  t.after(() => fixtures.killAll());
  const logFile = path.join(dir, 'fence.log');
  const holder = fixtures.add(startFixture(node, fixture('host-contender'), [dir, 'job', logFile]));
  await holder.next('running');
  const waiter = fixtures.add(startFixture(selected(bun), fixture('host-contender'), [dir, 'job', logFile]));
  await waiter.next('contending');
  await waitForBlockedWaiters(path.join(dir, 'job.lock'), 1);
  const held = cli('lock', 'job', '--lock-dir', dir);
  assert.equal(held.status, 0);
  // The process blocked in flock(2) is the waiter's child (flock(1) or the built-in waiter).
  const [queued] = flockRequests(path.join(dir, 'job.lock')).blockedPids;
  assert.equal(parentOf(queued!), waiter.pid);
  assert.deepEqual(held.stdout.split('\n'), [`job: running (lock held); 1 waiting; last holder pid ${holder.pid}, fencing token 1`, `  ${path.join(dir, 'job.lock')}`, `  waiting: pid ${queued}`, '']);
  await holder.kill('SIGKILL');
  await waiter.next('running');
  await waiter.kill('SIGKILL');
  assert.deepEqual(JSON.parse(cli('lock', 'job', '--lock-dir', dir, '--json').stdout), { file: path.join(dir, 'job.lock'), held: false, waiting: 0, waitingPids: [], lastToken: 2, lastPid: waiter.pid });
  const reset = cli('lock', 'job', '--lock-dir', dir, '--reset', '--json');
  assert.equal(reset.status, 0, reset.stderr);
  assert.deepEqual(JSON.parse(reset.stdout), { file: path.join(dir, 'job.lock'), reset: true });
  assert.equal(JSON.parse(cli('lock', 'job', '--lock-dir', dir, '--json').stdout).lastToken, 0, 'the next holder gets token 1');
});

test('bellwether: help, version, bad input', () => {
  assert.match(cli('--help').stdout, /Usage: bellwether <command>/);
  assert.match(cli('--version').stdout, /^\d+\.\d+\.\d+\n$/);
  const bad = cli('lock', '../x', '--lock-dir', '/tmp');
  assert.equal(bad.status, 64);
  assert.match(bad.stderr, /BW_ERR_INVALID_NAME/);
  assert.equal(cli('frobnicate').status, 64);
});
