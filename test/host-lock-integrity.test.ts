/**
 * "Exactly one per host" rests on one flock(2) lock: what happens to the
 * file, the directory, PATH or the permissions must not give two holders
 * (or a job that never runs).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, test } from 'node:test';
import { defaultLockDir, singleton } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { Fixtures, startFixture } from './helpers/child.js';
import { keepLoopAlive } from './helpers/emitter.js';
import { checkFenceLog } from './helpers/fence-log.js';
import { waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { FLOCK } from './helpers/tools.js';

const NOBODY = 65534;
const CONTENDER = fixture('host-contender');
const MOMENTS = fixture('singleton-moments');
const FD_EXHAUSTED = fixture('fd-exhausted-contender');
const LEFTOVERS = fixture('waiter-leftovers');

// Waiting singletons do not keep a process alive: the test run must.
keepLoopAlive();

async function startCode(t: TestContext, options: Parameters<typeof singleton>[0]): Promise<{ code: string; message: string }> {
  const job = singleton(options);
  t.after(() => job.close());
  try {
    await job.start();
    return { code: 'started', message: '' };
  } catch (err) {
    return { code: (err as { code: string }).code, message: (err as Error).message };
  }
}

/** A singleton whose first term runs `duringFirstTerm` and then fails, so that it locks again: the tokens of both terms. */
async function twoTerms(t: TestContext, lockDir: string, duringFirstTerm: () => void): Promise<number[]> {
  let terms = 0;
  const job = singleton({
    name: 'job',
    lockDir,
    backoff: { initial: 10, max: 10 },
    run: () => {
      terms += 1;
      if (terms === 1) {
        duringFirstTerm();
        throw new Error('first term ends');
      }
    },
  });
  job.on('error', () => {});
  t.after(() => job.close());
  const tokens: number[] = [];
  const second = new Promise<void>((resolve) =>
    job.on('elected', ({ token }) => {
      tokens.push(token);
      if (tokens.length === 2) resolve();
    }),
  );
  await job.start();
  await bounded('second term', second, 5000);
  return tokens;
}

/** A singleton of this process that holds the lock of `job` in `lockDir`, closed after the test. */
async function electedHolder(t: TestContext, lockDir: string): Promise<ReturnType<typeof singleton>> {
  const holder = singleton({ name: 'job', lockDir });
  t.after(() => holder.close());
  await holder.start();
  await new Promise((resolve) => holder.once('elected', resolve));
  return holder;
}

function withEnv(t: TestContext, name: string, value: string | undefined): void {
  const saved = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  t.after(() => {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  });
}

for (const runtime of RUNTIMES) {
  describe(`the lock file deleted while held (${runtime.name})`, () => {
    test('the holder stops, puts the file back with its token, and the queued waiter does not lead on the old file', async (t) => {
      // Killed before the directory is removed (after-hooks run in order).
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const dir = tempDir(t);
      const file = path.join(dir, 'job.lock');
      const logFile = path.join(dir, 'fence.log');
      const holder = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile]));
      assert.equal((await bounded('holder runs', holder.next('running'), 20_000))['token'], 1);
      const waiter = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile]));
      await bounded('waiter contends', waiter.next('contending'), 20_000);
      await waitForBlockedWaiters(file, 1);
      fs.unlinkSync(file); // a tmp cleaner, or the old advice to reset the count
      const demoted = await bounded('holder demoted', holder.next('demoted'), 5000);
      assert.deepEqual([demoted['token'], demoted['reason']], [1, 'lost']);
      // The count goes on (token 2), in one of the two, on the file now at the path.
      const next = await bounded('next term', Promise.any([holder, waiter].map((f) => f.next('running', (e) => e['token'] === 2).then(() => f))), 5000);
      const newcomer = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile]));
      await bounded('newcomer contends', newcomer.next('contending'), 20_000);
      await waitForBlockedWaiters(file, 2);
      assert.deepEqual(checkFenceLog(logFile), [1, 2], 'never two runners, tokens increasing');
      const running = [holder, waiter, newcomer].filter((f) => f.count('running') > f.count('stopped'));
      assert.deepEqual(running, [next], 'exactly one runs');
    });
  });

  describe(`the lock file deleted under a holder slow to stop (${runtime.name})`, () => {
    test('the put-back file is locked: a newcomer waits until the old job has stopped', async (t) => {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const dir = tempDir(t);
      const file = path.join(dir, 'job.lock');
      const logFile = path.join(dir, 'fence.log');
      const holder = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile], { STOP_ON_COMMAND: '1' }));
      await bounded('holder runs', holder.next('running'), 20_000);
      const { ino } = fs.statSync(file);
      fs.unlinkSync(file);
      // Put back within milliseconds (a newcomer opening the path before that would make its own file).
      const deadline = Date.now() + 5000;
      while (!(fs.existsSync(file) && fs.statSync(file).ino !== ino) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(fs.existsSync(file), 'the holder put its file back');
      const newcomer = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile]));
      await bounded('newcomer contends', newcomer.next('contending'), 20_000);
      // Queued in the kernel behind the put-back lock while the old job still runs:
      // the holder's stop ends only then, as a slow job's would.
      await waitForBlockedWaiters(file, 1);
      await bounded('holder told to stop', holder.next('stopping'), 5000);
      holder.send('finish-stop');
      await bounded('newcomer runs', newcomer.next('running'), 10_000);
      assert.deepEqual(checkFenceLog(logFile), [1, 2], 'the newcomer started after the old job stopped, with the next token');
    });
  });

  describe(`no descriptor to spare (${runtime.name})`, () => {
    test('a waiting helper that cannot be started (EMFILE) is an error, not a crash; the wait is tried again and takes over', async (t) => {
      const dir = tempDir(t);
      const holder = await electedHolder(t, dir);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const lowLimit = ['/bin/sh', '-c', 'ulimit -n 256 && exec "$@"', 'sh'];
      const other = fixtures.add(startFixture(runtime, FD_EXHAUSTED, [dir, 'job'], {}, lowLimit));
      const error = await bounded('error', other.next('error'), 20_000);
      assert.equal(error['code'], 'BW_ERR_FLOCK_UNAVAILABLE', String(error['message']));
      assert.ok(Number(error['freed']) > 0, 'the descriptors were exhausted when the wait began');
      await waitForBlockedWaiters(path.join(dir, 'job.lock'), 1);
      assert.equal(other.count('elected'), 0, 'never elected while the holder holds the lock');
      await holder.close();
      assert.equal((await bounded('takeover', other.next('running'), 10_000))['token'], 2);
    });
  });

  describe(`nothing left of the helpers (${runtime.name})`, () => {
    test('a singleton closed while it waits keeps no socket and no child of its waiters (the rehearsal at start included)', async (t) => {
      const dir = tempDir(t);
      await electedHolder(t, dir);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const waiter = fixtures.add(startFixture(runtime, LEFTOVERS, [dir, 'job']));
      await bounded('started', waiter.next('started'), 20_000);
      await waitForBlockedWaiters(path.join(dir, 'job.lock'), 1);
      waiter.send('close');
      const closed = await bounded('closed', waiter.next('closed'), 20_000);
      assert.deepEqual([closed['sockets'], closed['children']], [[], []]);
      await waitForBlockedWaiters(path.join(dir, 'job.lock'), 0);
    });
  });

  describe(`helper programs are not taken from PATH (${runtime.name})`, () => {
    test('a fake flock first on PATH (as node_modules/.bin under npm run) does not make a second leader', async (t) => {
      const dir = tempDir(t);
      const bin = path.join(dir, 'bin');
      fs.mkdirSync(bin);
      for (const name of ['flock', 'setpriv']) {
        fs.writeFileSync(path.join(bin, name), '#!/bin/sh\necho "flock: getting lock took 0.000001 seconds"\nexec sleep 30\n', { mode: 0o755 });
      }
      const holder = await electedHolder(t, dir);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const other = fixtures.add(startFixture(runtime, MOMENTS, [dir, 'job'], { PATH: `${bin}:${process.env['PATH']}`, KEEP_ALIVE: '1', RUN: 'return', CLOSE: 'signal' }));
      await bounded('started', other.next('started'), 20_000);
      await waitForBlockedWaiters(path.join(dir, 'job.lock'), 1); // queued for real, in the kernel
      process.kill(other.pid, 'SIGUSR2');
      assert.deepEqual(await bounded('exit', other.exited, 10_000), { code: 0, signal: null }, other.stderr);
      assert.equal(other.count('elected'), 0, 'never elected while the holder holds the lock');
    });

    test('a waiter that exits 0, with or without the line, is not the lock; once it is free, it is taken all the same', async (t) => {
      const dir = tempDir(t);
      const logFile = path.join(dir, 'fence.log');
      const liars = {
        'says it has the lock': '#!/bin/sh\necho "flock: getting lock took 0.000001 seconds"\nexit 0\n',
        'exits 0 at once': '#!/bin/sh\nexit 0\n',
      };
      const tokens: number[] = [];
      for (const [what, script] of Object.entries(liars)) {
        const liar = path.join(dir, 'liar');
        fs.writeFileSync(liar, script, { mode: 0o755 });
        const holder = singleton({ name: 'job', lockDir: dir });
        await holder.start();
        await new Promise((resolve) => holder.once('elected', resolve));
        const fixtures = new Fixtures();
        t.after(() => fixtures.killAll());
        const other = fixtures.add(startFixture(runtime, CONTENDER, [dir, 'job', logFile], { BELLWETHER_FLOCK: liar }));
        for (let n = 1; n <= 2; n++) {
          const error = await bounded(`${what}: error ${n}`, other.next('error', (e) => other.events.filter((x) => x.event === 'error').indexOf(e) === n - 1), 10_000);
          assert.equal(error['code'], 'BW_ERR_FLOCK_UNAVAILABLE', what);
        }
        assert.equal(other.count('elected'), 0, `${what}: never elected while the holder holds the lock`);
        await holder.close();
        const running = await bounded(`${what}: runs once the lock is free`, other.next('running'), 10_000);
        tokens.push(Number(running['token']));
        await other.kill();
      }
      assert.deepEqual(tokens, [2, 4], 'each time after the holder (tokens 1 and 3)');
      assert.deepEqual(checkFenceLog(logFile), [2, 4]);
    });
  });
}

describe('lock directory and file checks', () => {
  test('the default lock directory does not follow the session (XDG_RUNTIME_DIR, TMPDIR); BELLWETHER_LOCK_DIR names it', (t) => {
    withEnv(t, 'BELLWETHER_LOCK_DIR', undefined);
    withEnv(t, 'XDG_RUNTIME_DIR', '/run/user/12345');
    withEnv(t, 'TMPDIR', '/var/tmp');
    assert.equal(defaultLockDir(), `/tmp/bellwether-${process.getuid!()}`);
    withEnv(t, 'BELLWETHER_LOCK_DIR', '/srv/locks');
    assert.equal(defaultLockDir(), '/srv/locks');
  });

  test("a holder's count never goes back: the file emptied under it, its next term still gets a higher token", async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'job.lock');
    fs.writeFileSync(file, `${JSON.stringify({ token: 4, pid: 1 }).padEnd(63)}\n`, { mode: 0o600 });
    const tokens = await twoTerms(t, dir, () => fs.truncateSync(file, 0)); // by hand, or a faulty tool: the stored count is gone
    assert.deepEqual(tokens, [5, 6]);
  });

  test('a symlinked default lock directory is refused, with what to do', async (t) => {
    const runtimeDir = tempDir(t);
    const elsewhere = path.join(runtimeDir, 'elsewhere');
    fs.mkdirSync(elsewhere, { mode: 0o700 });
    fs.symlinkSync(elsewhere, path.join(runtimeDir, 'bellwether'));
    withEnv(t, 'BELLWETHER_LOCK_DIR', path.join(runtimeDir, 'bellwether'));
    const { code, message } = await startCode(t, { name: 'job' });
    assert.equal(code, 'BW_ERR_LOCK_DIR_UNSAFE');
    assert.match(message, /default lock directory .* is a symlink .*: set the singleton's lockDir/);
  });

  test('an explicit lock directory through a symlink is resolved once: swapping the link later changes nothing', async (t) => {
    const dir = tempDir(t);
    const real = path.join(dir, 'real');
    const other = path.join(dir, 'other');
    fs.mkdirSync(real, { mode: 0o700 });
    fs.mkdirSync(other, { mode: 0o700 });
    const link = path.join(dir, 'link');
    fs.symlinkSync(real, link);
    // The first term swaps the link (as another user owning it could); the second term locks again.
    assert.deepEqual(
      await twoTerms(t, link, () => {
        fs.rmSync(link);
        fs.symlinkSync(other, link);
      }),
      [1, 2],
    );
    assert.match(fs.readFileSync(path.join(real, 'job.lock'), 'utf8'), /"token":2/, 'the second term locked the same file');
    assert.equal(fs.existsSync(path.join(other, 'job.lock')), false, 'nothing was opened through the swapped link');
  });

  test('a default directory squatted by another user: refused, saying who owns it and how to recover', async (t) => {
    assert.equal(process.getuid?.(), 0, 'needs root to create a directory owned by another user');
    const runtimeDir = tempDir(t);
    fs.mkdirSync(path.join(runtimeDir, 'bellwether'), { mode: 0o700 });
    fs.chownSync(path.join(runtimeDir, 'bellwether'), NOBODY, NOBODY);
    withEnv(t, 'BELLWETHER_LOCK_DIR', path.join(runtimeDir, 'bellwether'));
    const { code, message } = await startCode(t, { name: 'job' });
    assert.equal(code, 'BW_ERR_LOCK_DIR_UNSAFE');
    assert.match(message, /default lock directory .* is owned by uid 65534, not by this user \(uid 0\): another user created it first.*set the singleton's lockDir \(or --lock-dir\), or BELLWETHER_LOCK_DIR for every process of the job, to a directory of yours/);
  });

  test('a lock file others can read (flock(1) under umask 022) is made 0600: another user can no longer take the lock', async (t) => {
    assert.equal(process.getuid?.(), 0, 'needs root to act as another user');
    const dir = tempDir(t);
    fs.chmodSync(dir, 0o755); // an explicit directory others may enter
    const file = path.join(dir, 'job.lock');
    fs.writeFileSync(file, '', { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    const job = singleton({ name: 'job', lockDir: dir });
    t.after(() => job.close());
    await job.start();
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    await job.close();
    // As nobody, with the lock free: the file cannot even be opened.
    const probe = spawnSync(FLOCK, ['-n', file, 'true'], { uid: NOBODY, gid: NOBODY, encoding: 'utf8' });
    assert.notEqual(probe.status, 0);
    assert.match(probe.stderr, /Permission denied/);
  });
});
