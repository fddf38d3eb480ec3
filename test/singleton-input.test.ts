import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, test } from 'node:test';
import { singleton } from 'bellwether';
import { bounded } from './helpers/bounded.js';
import { Fixtures, startFixture } from './helpers/child.js';
import { keepLoopAlive } from './helpers/emitter.js';
import { fixture, node } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';
import { FLOCK } from './helpers/tools.js';

const NOBODY = 65534;
const TASK = new URL('./fixtures/task-job.js', import.meta.url);
const isRoot = process.getuid?.() === 0;

// Waiting singletons do not keep a process alive: the test run must.
keepLoopAlive();

describe('singleton(): bad options fail at the call, with codes', () => {
  const cases: [string, unknown, string][] = [
    ['options not an object', 'job', 'BW_ERR_INVALID_OPTION'],
    ['unknown option (a typo)', { name: 'job', lockdir: '/tmp' }, 'BW_ERR_INVALID_OPTION'],
    ['name missing', {}, 'BW_ERR_INVALID_NAME'],
    ['name empty', { name: '' }, 'BW_ERR_INVALID_NAME'],
    ['name with a slash', { name: 'a/b' }, 'BW_ERR_INVALID_NAME'],
    ['name ..', { name: '..' }, 'BW_ERR_INVALID_NAME'],
    ['name of 129 characters', { name: 'x'.repeat(129) }, 'BW_ERR_INVALID_NAME'],
    ['name not a string', { name: 7 }, 'BW_ERR_INVALID_NAME'],
    ['unknown scope', { name: 'job', scope: 'fleet' }, 'BW_ERR_INVALID_OPTION'],
    ['cluster scope without a ZkSession', { name: 'job', scope: 'cluster' }, 'BW_ERR_INVALID_OPTION'],
    ['host+cluster scope without a ZkSession, outside a supervised worker', { name: 'job', scope: 'host+cluster' }, 'BW_ERR_INVALID_OPTION'],
    ['host-only option with cluster scope', { name: 'job', scope: 'cluster', lockDir: '/tmp' }, 'BW_ERR_INVALID_OPTION'],
    ['cluster-only option with host scope', { name: 'job', data: 'x' }, 'BW_ERR_INVALID_OPTION'],
    ['run not a function', { name: 'job', run: 'go' }, 'BW_ERR_INVALID_OPTION'],
    ['lockDir empty', { name: 'job', lockDir: '' }, 'BW_ERR_INVALID_OPTION'],
    ['lockDir not a string', { name: 'job', lockDir: 3 }, 'BW_ERR_INVALID_OPTION'],
    ['keepAlive not a boolean', { name: 'job', keepAlive: 'yes' }, 'BW_ERR_INVALID_OPTION'],
    ['backoff.initial negative', { name: 'job', backoff: { initial: -1 } }, 'BW_ERR_INVALID_OPTION'],
    ['backoff.max below initial', { name: 'job', backoff: { initial: 500, max: 100 } }, 'BW_ERR_INVALID_OPTION'],
    ['task and run both', { name: 'job', task: TASK, run: () => {} }, 'BW_ERR_INVALID_OPTION'],
    ['task a relative path', { name: 'job', task: 'fixtures/task-job.js' }, 'BW_ERR_INVALID_OPTION'],
    ['task a missing file', { name: 'job', task: new URL('./fixtures/no-such-task.js', import.meta.url) }, 'BW_ERR_INVALID_OPTION'],
    ['task a directory', { name: 'job', task: new URL('./fixtures/', import.meta.url) }, 'BW_ERR_INVALID_OPTION'],
    ['task an http: URL', { name: 'job', task: new URL('http://127.0.0.1/task.js') }, 'BW_ERR_INVALID_OPTION'],
    ['task not a string or URL', { name: 'job', task: 7 }, 'BW_ERR_INVALID_OPTION'],
    ['stopTimeout without task', { name: 'job', run: () => {}, stopTimeout: 100 }, 'BW_ERR_INVALID_OPTION'],
    ['stopTimeout negative', { name: 'job', task: TASK, stopTimeout: -1 }, 'BW_ERR_INVALID_OPTION'],
    ['resourceLimits without task', { name: 'job', resourceLimits: { maxOldGenerationSizeMb: 64 } }, 'BW_ERR_INVALID_OPTION'],
    ['resourceLimits with an unknown key', { name: 'job', task: TASK, resourceLimits: { heap: 64 } }, 'BW_ERR_INVALID_OPTION'],
    ['resourceLimits not positive', { name: 'job', task: TASK, resourceLimits: { maxOldGenerationSizeMb: 0 } }, 'BW_ERR_INVALID_OPTION'],
    ['resourceLimits.stackSizeMb below 1', { name: 'job', task: TASK, resourceLimits: { stackSizeMb: 0.2 } }, 'BW_ERR_INVALID_OPTION'],
    ['resourceLimits.maxOldGenerationSizeMb below 4', { name: 'job', task: TASK, resourceLimits: { maxOldGenerationSizeMb: 1 } }, 'BW_ERR_INVALID_OPTION'],
    ['task a path with a NUL byte', { name: 'job', task: '/tmp/task\0.js' }, 'BW_ERR_INVALID_OPTION'],
    ['every without run or task', { name: 'job', every: 1000 }, 'BW_ERR_INVALID_OPTION'],
    ['every 0', { name: 'job', run: () => {}, every: 0 }, 'BW_ERR_INVALID_OPTION'],
  ];
  for (const [what, options, code] of cases) {
    test(what, () => {
      assert.throws(() => singleton(options as never), (err: { name: string; code: string }) => {
        assert.equal(err.name, 'BellwetherError');
        assert.equal(err.code, code);
        return true;
      });
    });
  }
  test('a task as a file: URL, a file: URL string or an absolute path is fine', () => {
    for (const task of [TASK, TASK.href, TASK.pathname]) assert.equal(singleton({ name: 'job', task, every: 1000, stopTimeout: 0 }).state, 'latent');
  });
  test('a name of 128 characters from the whole alphabet is fine', () => {
    assert.equal(singleton({ name: `Az09._-${'x'.repeat(121)}` }).state, 'latent');
  });
});

describe('start(): bad lock directories and files fail before anything is locked', () => {
  async function startCode(t: TestContext, lockDir: string, name = 'job'): Promise<string> {
    const job = singleton({ name, lockDir });
    t.after(() => job.close());
    try {
      await job.start();
      return 'started';
    } catch (err) {
      assert.equal(job.isLeader, false);
      return (err as { code: string }).code;
    }
  }

  test('missing directory', async (t) => {
    assert.equal(await startCode(t, path.join(tempDir(t), 'nope')), 'BW_ERR_LOCK_DIR_MISSING');
  });

  test('a file, not a directory', async (t) => {
    const file = path.join(tempDir(t), 'file');
    fs.writeFileSync(file, '');
    assert.equal(await startCode(t, file), 'BW_ERR_LOCK_DIR_NOT_DIRECTORY');
  });

  test('writable by others without the sticky bit; with it, accepted', async (t) => {
    const dir = tempDir(t);
    fs.chmodSync(dir, 0o777);
    assert.equal(await startCode(t, dir), 'BW_ERR_LOCK_DIR_UNSAFE');
    fs.chmodSync(dir, 0o1777);
    assert.equal(await startCode(t, dir), 'started');
  });

  test('owned by another user', async (t) => {
    const dir = tempDir(t);
    // As root, give it away; otherwise a root-owned directory is another user's.
    if (isRoot) fs.chownSync(dir, NOBODY, NOBODY);
    assert.equal(await startCode(t, isRoot ? dir : '/usr'), 'BW_ERR_LOCK_DIR_UNSAFE');
  });

  test('lock file is a symlink (even to a file of ours)', async (t) => {
    const dir = tempDir(t);
    fs.writeFileSync(path.join(dir, 'target'), '');
    fs.symlinkSync(path.join(dir, 'target'), path.join(dir, 'job.lock'));
    assert.equal(await startCode(t, dir), 'BW_ERR_LOCK_FILE_UNSAFE');
  });

  test('lock file is not a regular file', async (t) => {
    const dir = tempDir(t);
    fs.mkdirSync(path.join(dir, 'job.lock'));
    assert.equal(await startCode(t, dir), 'BW_ERR_LOCK_FILE_UNSAFE');
  });

  test('lock file owned by another user', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'job.lock');
    fs.writeFileSync(file, '');
    // Only root can hand a file to another user; CI and the dev machines run as root.
    assert.ok(isRoot, 'this case needs root to create a file owned by another user');
    fs.chownSync(file, NOBODY, NOBODY);
    assert.equal(await startCode(t, dir), 'BW_ERR_LOCK_FILE_UNSAFE');
  });

  test('lock file with foreign content: BW_ERR_LOCK_FILE_CORRUPT at every retry, never a reset token, never elected', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'job.lock');
    fs.writeFileSync(file, 'not a record\n');
    // A short backoff, so that the retries are seen: each must refuse the file again, not start over at token 1.
    const job = singleton({ name: 'job', lockDir: dir, backoff: { initial: 20, max: 40 } });
    t.after(() => job.close());
    let elected = false;
    job.on('elected', () => void (elected = true));
    const codes: string[] = [];
    const threeErrors = new Promise<void>((resolve) =>
      job.on('error', ({ code }) => {
        codes.push(code);
        if (codes.length === 3) resolve();
      }),
    );
    await job.start();
    await bounded('three attempts', threeErrors, 5000);
    await job.close();
    assert.deepEqual(codes, ['BW_ERR_LOCK_FILE_CORRUPT', 'BW_ERR_LOCK_FILE_CORRUPT', 'BW_ERR_LOCK_FILE_CORRUPT']);
    assert.equal(elected, false);
    assert.equal(fs.readFileSync(file, 'utf8'), 'not a record\n', 'the file is left as it was');
  });

  test('no permission to create the lock file (as another user when root)', async (t) => {
    const dir = tempDir(t);
    const lockDir = path.join(dir, 'locks');
    fs.mkdirSync(lockDir, { mode: 0o500 });
    if (!isRoot) {
      assert.equal(await startCode(t, lockDir), 'BW_ERR_LOCK_ACCESS');
      return;
    }
    // Root ignores permission bits: run the check as the directory's owner,
    // nobody, who may not be able to read the checkout: the fixture becomes
    // nobody once loaded.
    fs.chmodSync(dir, 0o755);
    fs.chownSync(lockDir, NOBODY, NOBODY);
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    const child = fixtures.add(startFixture(node, fixture('start-singleton'), ['job', lockDir], { BW_TEST_RUN_AS: String(NOBODY) }));
    const result = await child.next('result');
    assert.deepEqual([result['code'], result['uid']], ['BW_ERR_LOCK_ACCESS', NOBODY]);
  });

  test('BELLWETHER_FLOCK naming no trusted program: missing, relative, or writable by others', async (t) => {
    const dir = tempDir(t);
    const loose = path.join(dir, 'flock');
    fs.copyFileSync(FLOCK, loose);
    fs.chmodSync(loose, 0o777);
    const fixtures = new Fixtures();
    t.after(() => fixtures.killAll());
    for (const value of ['/nonexistent/flock', 'flock', loose]) {
      const child = fixtures.add(startFixture(node, fixture('start-singleton'), ['job', dir], { BELLWETHER_FLOCK: value }));
      assert.equal((await child.next('result'))['code'], 'BW_ERR_FLOCK_UNAVAILABLE', value);
    }
  });
});
