import assert from 'node:assert/strict';
import { once } from 'node:events';
import { keepLoopAlive, next } from './helpers/emitter.js';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Singleton, singleton } from 'bellwether';
import { type Fixture, Fixtures, startFixture } from './helpers/child.js';
import { bounded } from './helpers/bounded.js';
import { flockState, waitForBlockedWaiters } from './helpers/proc-locks.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { ZkEnsemble } from './helpers/zookeeper.js';

function elected(job: Singleton): Promise<number> {
  return next(job, 'elected').then((e) => e.token);
}

function closeAfter(t: { after: (fn: () => Promise<void>) => void }, ...jobs: Singleton[]): void {
  t.after(async () => {
    await Promise.all(jobs.map((j) => j.close()));
  });
}

/** An in-process holder of lock 'job', closed after the test: other contenders must wait. */
async function holdLock(t: TestContext, lockDir: string): Promise<Singleton> {
  const holder = singleton({ name: 'job', lockDir });
  closeAfter(t, holder);
  await holder.start();
  await elected(holder);
  return holder;
}

// Waiting singletons do not keep a process alive: the test run must.
keepLoopAlive();

describe('singleton lifecycle (in one process)', () => {
  test('start() resolves without waiting to win; the holder is the only leader', async (t) => {
    const lockDir = tempDir(t);
    const a = singleton({ name: 'job', lockDir });
    const b = singleton({ name: 'job', lockDir });
    closeAfter(t, a, b);
    await a.start();
    assert.equal(await elected(a), 1);
    await b.start();
    await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 1);
    assert.equal(b.isLeader, false);
    assert.equal(b.token, undefined);
    assert.equal(a.isLeader, true);
    assert.equal(a.token, 1);
  });

  test('a run that resolves keeps leadership until close(); close aborts the signal and waits for run to settle', async (t) => {
    const lockDir = tempDir(t);
    const steps: string[] = [];
    const a = singleton({
      name: 'job',
      lockDir,
      run: async ({ signal }) => {
        await once(signal, 'abort');
        steps.push('a aborted');
        await sleep(30); // cleanup that takes time: the lock must not move before it ends
        steps.push('a settled');
      },
    });
    const b = singleton({ name: 'job', lockDir, run: ({ token }) => void steps.push(`b runs ${token}`) });
    closeAfter(t, a, b);
    await a.start();
    await elected(a);
    await b.start();
    await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 1);
    const bElected = elected(b);
    const demoted = next(a, 'demoted');
    await a.close();
    steps.push('a closed');
    assert.deepEqual(await demoted, { token: 1, reason: 'closed' });
    assert.equal(await bElected, 2);
    assert.deepEqual(steps, ['a aborted', 'a settled', 'a closed', 'b runs 2']);
    assert.equal(b.isLeader, true, 'b stays leader after its run resolved');
  });

  test('a run that throws: error with cause, lock released, contends again after backoff', async (t) => {
    const lockDir = tempDir(t);
    const boom = new Error('boom');
    let attempts = 0;
    const a = singleton({
      name: 'job',
      lockDir,
      backoff: { initial: 5, max: 5 },
      run: () => {
        attempts += 1;
        if (attempts === 1) throw boom;
      },
    });
    const b = singleton({ name: 'job', lockDir });
    closeAfter(t, a, b);
    const errored = next(a, 'error');
    const demoted = next(a, 'demoted');
    await a.start();
    await elected(a);
    const error = await errored;
    assert.equal(error.code, 'BW_ERR_CALLBACK_FAILED');
    assert.equal(error.cause, boom);
    assert.deepEqual(await demoted, { token: 1, reason: 'failed' });
    // b takes the released lock (a is backing off or waiting again).
    await b.start();
    assert.equal(await elected(b), 2);
    const again = next(a, 'elected');
    await b.close();
    // b's term came between a's two: no gap measured in a (what ran between is not a's to see).
    assert.deepEqual(await again, { token: 3 });
    assert.equal(attempts, 2);
    assert.deepEqual(a.stepDowns, { closed: 0, failed: 1, lost: 0 });
    assert.deepEqual(b.stepDowns, { closed: 1, failed: 0, lost: 0 });
  });

  test('close() while waiting stops waiting at once and leaves the queue; close twice and dispose are harmless', async (t) => {
    const lockDir = tempDir(t);
    const lockFile = path.join(lockDir, 'job.lock');
    const holder = singleton({ name: 'job', lockDir });
    let waiterRan = false;
    const waiter = singleton({ name: 'job', lockDir, run: () => void (waiterRan = true) });
    closeAfter(t, holder, waiter);
    await holder.start();
    await elected(holder);
    await waiter.start();
    await waitForBlockedWaiters(lockFile, 1);
    await waiter.close();
    await waitForBlockedWaiters(lockFile, 0);
    await waiter.close();
    await waiter[Symbol.asyncDispose]();
    assert.equal(waiter.state, 'closed');
    await holder.close();
    const third = singleton({ name: 'job', lockDir });
    closeAfter(t, third);
    await third.start();
    assert.equal(await elected(third), 2);
    assert.equal(waiterRan, false, 'a closed waiter never runs');
  });

  test('once close() resolved the lock is free, whatever moment of the wait it came at (100 rounds)', async (t) => {
    const lockDir = tempDir(t);
    const file = path.join(lockDir, 'job.lock');
    for (let round = 0; round < 100; round++) {
      const job = singleton({ name: 'job', lockDir });
      await job.start();
      // Anywhere from before the helper is spawned to after it took the lock.
      const until = performance.now() + (round % 8);
      while (performance.now() < until);
      await job.close();
      assert.deepEqual(flockState(file), { held: 0, blocked: 0 }, `round ${round}: still locked after close() resolved`);
    }
  });

  test('start() after close() and start() twice fail with codes', async (t) => {
    const lockDir = tempDir(t);
    const job = singleton({ name: 'job', lockDir });
    await job.start();
    await assert.rejects(job.start(), { code: 'BW_ERR_ALREADY_STARTED' });
    await job.close();
    await assert.rejects(job.start(), { code: 'BW_ERR_CLOSED' });
    const never = singleton({ name: 'job', lockDir });
    await never.close();
    await assert.rejects(never.start(), { code: 'BW_ERR_CLOSED' });
  });

  test('the default lock directory ($BELLWETHER_LOCK_DIR here) is created 0700, lock files are 0600', async (t) => {
    const runtimeDir = tempDir(t);
    const saved = process.env['BELLWETHER_LOCK_DIR'];
    process.env['BELLWETHER_LOCK_DIR'] = path.join(runtimeDir, 'bellwether');
    t.after(() => {
      if (saved === undefined) delete process.env['BELLWETHER_LOCK_DIR'];
      else process.env['BELLWETHER_LOCK_DIR'] = saved;
    });
    const job = singleton({ name: 'default-dir' });
    closeAfter(t, job);
    await job.start();
    await elected(job);
    const dir = path.join(runtimeDir, 'bellwether');
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(dir, 'default-dir.lock')).mode & 0o777, 0o600);
    assert.match(fs.readFileSync(path.join(dir, 'default-dir.lock'), 'utf8'), /^\{"token":1,"pid":\d+\} +\n$/);
  });
});

describe('a waiting singleton never keeps its process alive', () => {
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: exits by itself while waiting`, async (t) => {
      const lockDir = tempDir(t);
      await holdLock(t, lockDir);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const waiter = fixtures.add(startFixture(runtime, fixture('idle-waiter'), [lockDir, 'job']));
      waiter.child.stdin!.end();
      assert.equal((await waiter.next('exiting'))['leader'], false);
      assert.deepEqual(await waiter.exited, { code: 0, signal: null });
      assert.equal(waiter.count('running'), 0);
      await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 0);
    });
  }
});

describe('close() settles and keepAlive holds, in a process with nothing else to do', () => {
  const moments = fixture('singleton-moments');

  for (const runtime of RUNTIMES) {
    async function runFixture(t: TestContext, lockDir: string, env: NodeJS.ProcessEnv): Promise<{ fixture: Fixture; exit: { code: number | null; signal: NodeJS.Signals | null } }> {
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const child = fixtures.add(startFixture(runtime, moments, [lockDir, 'job'], env));
      child.child.stdin!.end();
      return { fixture: child, exit: await bounded(`${child.label} exit`, child.exited, 20_000) };
    }

    test(`${runtime.name}: close() right after start() settles, the lock free or held by another process`, async (t) => {
      const lockDir = tempDir(t);
      const free = await runFixture(t, lockDir, { CLOSE: 'after-start', RUN: 'return' });
      assert.deepEqual(free.exit, { code: 0, signal: null }, free.fixture.stderr);
      assert.equal(free.fixture.count('closed'), 1);
      await holdLock(t, lockDir);
      const held = await runFixture(t, lockDir, { CLOSE: 'after-start', RUN: 'return' });
      assert.deepEqual(held.exit, { code: 0, signal: null }, held.fixture.stderr);
      assert.equal(held.fixture.count('closed'), 1);
      assert.equal(held.fixture.count('run'), 0);
      await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 0);
    });

    test(`${runtime.name}: close() right after start(), the lock held by another process, settles in every one of 25 processes`, async (t) => {
      // The aborted helper's pipes may be unread when its exit is seen, with nothing else keeping the process alive.
      const lockDir = tempDir(t);
      await holdLock(t, lockDir);
      for (let i = 1; i <= 25; i++) {
        const held = await runFixture(t, lockDir, { CLOSE: 'after-start', RUN: 'return' });
        assert.deepEqual(held.exit, { code: 0, signal: null }, `process ${i}: ${held.fixture.stderr}`);
        assert.equal(held.fixture.count('closed'), 1, `process ${i} closed`);
      }
      await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 0);
    });

    test(`${runtime.name}: close() inside the elected listener and while run is running settles after run did`, async (t) => {
      const lockDir = tempDir(t);
      const onElected = await runFixture(t, lockDir, { CLOSE: 'on-elected', RUN: 'until-abort', HOLD_UNTIL_ELECTED: '1' });
      assert.deepEqual(onElected.exit, { code: 0, signal: null }, onElected.fixture.stderr);
      assert.deepEqual(onElected.fixture.events.map((e) => e.event).filter((e) => e !== 'exit' && e !== 'started'), ['elected', 'closed']);
      assert.equal(onElected.fixture.count('run'), 0, 'closed before run could start');
      const running = await runFixture(t, lockDir, { CLOSE: 'after-run:0', RUN: 'until-abort', KEEP_ALIVE: '1' });
      assert.deepEqual(running.exit, { code: 0, signal: null }, running.fixture.stderr);
      const order = running.fixture.events.map((e) => e.event).filter((e) => e !== 'exit' && e !== 'started');
      assert.deepEqual(order, ['elected', 'run', 'aborted', 'closed']);
      assert.equal(running.fixture.events.find((e) => e.event === 'closed')!['leader'], false);
    });

    test(`${runtime.name}: keepAlive holds a waiting process until close()`, async (t) => {
      const lockDir = tempDir(t);
      await holdLock(t, lockDir);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const waiter = fixtures.add(startFixture(runtime, moments, [lockDir, 'job'], { KEEP_ALIVE: '1', RUN: 'return', CLOSE: 'signal' }));
      waiter.child.stdin!.end();
      await waiter.next('started');
      // Still there and queued in the kernel: keepAlive holds it while it waits.
      await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 1);
      process.kill(waiter.pid, 'SIGUSR2');
      assert.deepEqual(await bounded('waiter exit', waiter.exited, 20_000), { code: 0, signal: null });
      assert.equal(waiter.count('closed'), 1);
      assert.equal(waiter.count('run'), 0);
      await waitForBlockedWaiters(path.join(lockDir, 'job.lock'), 0);
    });

    test(`${runtime.name}: keepAlive holds an idle leader after run resolved, and through the backoff after a failed run`, async (t) => {
      const lockDir = tempDir(t);
      // The close comes from an unref'd timer: only keepAlive can hold the process until it fires.
      const idle = await runFixture(t, lockDir, { KEEP_ALIVE: '1', RUN: 'return', CLOSE: 'after-run:300' });
      assert.deepEqual(idle.exit, { code: 0, signal: null }, idle.fixture.stderr);
      assert.deepEqual(idle.fixture.events.find((e) => e.event === 'closed')?.['leader'], false, 'closed() ran, after the idle leader was held');
      const failing = await runFixture(t, lockDir, { KEEP_ALIVE: '1', RUN: 'throw-once', CLOSE: 'after-run:300' });
      assert.deepEqual(failing.exit, { code: 0, signal: null }, failing.fixture.stderr);
      assert.deepEqual(failing.fixture.events.filter((e) => e.event === 'run').map((e) => e['token']), [2, 3], 'contended again after the backoff');
      assert.equal(failing.fixture.count('error'), 1);
      assert.equal(failing.fixture.count('closed'), 1);
    });

    test(`${runtime.name}: without keepAlive an idle leader's process ends once the app has nothing left (documented default)`, async (t) => {
      const lockDir = tempDir(t);
      const idle = await runFixture(t, lockDir, { RUN: 'return', CLOSE: 'after-run:300', HOLD_UNTIL_ELECTED: '1' });
      assert.deepEqual(idle.exit, { code: 0, signal: null }, idle.fixture.stderr);
      assert.equal(idle.fixture.count('run'), 1);
      assert.equal(idle.fixture.count('closed'), 0, 'nothing held the process until the unref\'d close');
    });
  }
});

describe('ZkSession: a call waiting to be retried settles when the session closes', () => {
  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: the server dies under a read, close() during the retry delay -> the read rejects with BW_ERR_CLOSED`, async (t) => {
      // A server of its own: this test kills it.
      const ensemble = await ZkEnsemble.start();
      t.after(() => ensemble.close());
      const [server] = ensemble.servers;
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const client = fixtures.add(startFixture(runtime, fixture('zk-retry-close'), [ensemble.connectString()]));
      client.child.stdin!.end();
      await bounded('client started', client.next('started'), 20_000);
      server!.pause(); // the read gets no answer...
      process.kill(client.pid, 'SIGUSR2');
      await bounded('read sent', client.next('read-sent'), 5000);
      await server!.kill(); // ...then its connection is lost: a retry is scheduled after 1 s
      assert.deepEqual(await bounded('client exit', client.exited, 20_000), { code: 0, signal: null }, client.stderr);
      assert.equal(client.count('closed'), 1);
      assert.equal(client.events.find((e) => e.event === 'read-settled')?.['outcome'], 'BW_ERR_CLOSED');
    });
  }
});

describe('host singleton: failures, warnings, the kernel queue, the default directory', () => {
  test('a run that rejects each time: error with cause, demoted failed, contends again after a backoff that doubles up to max', async (t) => {
    const lockDir = tempDir(t);
    const boom = new Error('async boom');
    const electedAt: number[] = [];
    const job = singleton({
      name: 'job',
      lockDir,
      backoff: { initial: 40, max: 80 },
      run: async () => {
        electedAt.push(performance.now());
        await new Promise((resolve) => setImmediate(resolve));
        throw boom;
      },
    });
    closeAfter(t, job);
    const errors: unknown[] = [];
    const demotions: string[] = [];
    const handoverGaps: (number | undefined)[] = [];
    job.on('demoted', ({ reason }) => void demotions.push(reason));
    job.on('elected', ({ handoverGapMs }) => void handoverGaps.push(handoverGapMs));
    const sixRuns = new Promise<void>((resolve) =>
      job.on('error', (err) => {
        errors.push(err.cause);
        assert.equal(err.code, 'BW_ERR_CALLBACK_FAILED');
        if (errors.length === 6) resolve();
      }),
    );
    await job.start();
    await bounded('six failed runs', sixRuns, 10_000);
    await job.close();
    assert.ok(errors.every((cause) => cause === boom));
    assert.deepEqual(demotions.slice(0, 6), Array(6).fill('failed'));
    const gaps = electedAt.slice(1).map((at, i) => at - electedAt[i]!);
    t.diagnostic(`gaps between runs: ${gaps.map((g) => Math.round(g)).join(', ')} ms`);
    // Never sooner than the backoff: 40, then 80 (doubled), then 80 (the cap).
    [40, 80, 80, 80, 80].forEach((floor, i) => assert.ok(gaps[i]! >= floor - 2, `gap ${i}: ${gaps[i]} ms < ${floor} ms`));
    // Without the cap the fifth would be 640 ms: far above anything a loaded machine adds to 80 ms.
    assert.ok(gaps[4]! < 400, `the backoff kept doubling past max: ${gaps[4]} ms`);
    // Each term after the first follows the previous one directly (the next generation, nobody between): its
    // handover gap is the time without a runner, from the failed run's end: the backoff, and less than from start to start.
    assert.equal(handoverGaps[0], undefined, 'the first term follows none here');
    [40, 80, 80, 80, 80].forEach((floor, i) => {
      const gap = handoverGaps[i + 1]!;
      assert.ok(gap >= floor - 2 && gap <= gaps[i]!, `handover gap ${i}: ${gap} ms, backoff ${floor} ms, start to start ${gaps[i]} ms`);
    });
    const { stepDowns } = job;
    assert.equal(stepDowns.lost, 0);
    assert.ok(stepDowns.failed >= 6);
    assert.equal(stepDowns.failed + stepDowns.closed, job.elections, 'every term ended, with its reason');
  });

  test('an error with no listener goes to process.emitWarning', async (t) => {
    const lockDir = tempDir(t);
    const boom = new Error('nobody listens');
    const job = singleton({ name: 'job', lockDir, backoff: { initial: 60_000, max: 60_000 }, run: () => Promise.reject(boom) });
    closeAfter(t, job);
    const warned = new Promise<Error>((resolve) => {
      const onWarning = (warning: Error): void => {
        if ((warning as { code?: string }).code !== 'BW_ERR_CALLBACK_FAILED') return;
        process.off('warning', onWarning);
        resolve(warning);
      };
      process.on('warning', onWarning);
    });
    await job.start();
    const warning = await bounded('warning', warned, 5000);
    assert.equal(warning.name, 'BellwetherError');
    assert.equal(warning.cause, boom);
  });

  for (const runtime of RUNTIMES) {
    test(`${runtime.name}: a waiting process SIGKILLed leaves the kernel's queue at once; the holder hands over to the next waiter`, async (t) => {
      const lockDir = tempDir(t);
      const lockFile = path.join(lockDir, 'job.lock');
      const holder = await holdLock(t, lockDir);
      const fixtures = new Fixtures();
      t.after(() => fixtures.killAll());
      const logFile = path.join(lockDir, 'fence.log');
      const doomed = fixtures.add(startFixture(runtime, fixture('host-contender'), [lockDir, 'job', logFile]));
      await doomed.next('contending');
      await waitForBlockedWaiters(lockFile, 1);
      await doomed.kill('SIGKILL');
      // Its flock(1) waiter dies with it (pdeathsig): nothing is left queued on the lock.
      await waitForBlockedWaiters(lockFile, 0);
      const heir = fixtures.add(startFixture(runtime, fixture('host-contender'), [lockDir, 'job', logFile]));
      await heir.next('contending');
      await waitForBlockedWaiters(lockFile, 1);
      await holder.close();
      assert.equal((await bounded('the next waiter runs', heir.next('elected'), 10_000))['token'], 2);
    });
  }
});
