/**
 * Every way a `bellwether` command line fails, as a user meets it: one line
 * on stderr saying what failed, where it looked and what to do, no stack
 * trace, and an exit code per class of failure (README, "Exit codes").
 * The CLI runs under Node and under Bun.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { CLI, assertFailure, bellwether } from './helpers/cli.js';
import { bounded } from './helpers/bounded.js';
import { freePort } from './helpers/ports.js';
import { RUNTIMES, fixture } from './helpers/runtimes.js';
import { tempDir } from './helpers/temp.js';

const APP = fixture('http-app');

/** A unix socket server at `file` for the test's duration; its connections are cut when the test ends. */
async function serve(t: { after(fn: () => unknown): void }, file: string, onConnection: (c: net.Socket) => void = () => {}): Promise<net.Server> {
  const connections = new Set<net.Socket>();
  const server = net.createServer((c) => {
    connections.add(c);
    c.on('error', () => {});
    c.on('close', () => connections.delete(c));
    onConnection(c);
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  t.after(async () => {
    for (const c of connections) c.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return server;
}

/** A socket file nobody listens on (what a SIGKILLed primary leaves behind): a link to a listening socket, kept after it closes. */
async function staleSocket(t: { after(fn: () => unknown): void }, file: string): Promise<void> {
  const live = `${file}.live`;
  const server = await serve(t, live);
  fs.linkSync(live, file);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Runs `run` while `file` has `mode`, restored at once after (so the temp dir can be removed whatever the outcome). */
async function underMode<T>(file: string, mode: number, run: () => Promise<T>): Promise<T> {
  const before = fs.statSync(file).mode & 0o7777;
  fs.chmodSync(file, mode);
  try {
    return await run();
  } finally {
    fs.chmodSync(file, before);
  }
}

for (const runtime of RUNTIMES) {
  describe(`bellwether output to a reader that went away, under ${runtime.name}`, () => {
    test('a query whose stdout is closed ends with its own exit code, without a stack trace', async () => {
      for (const args of [['--help'], ['--version']]) {
        const run = spawn(runtime.bin, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        run.stdout.destroy(); // closed long before the CLI has loaded and writes
        let stderr = '';
        run.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const [code] = (await bounded(`bellwether ${args[0]}`, once(run, 'close'), 20_000)) as [number | null];
        assert.deepEqual([code, stderr], [0, ''], args[0]);
      }
    });

    test('a supervisor whose stderr reader is gone keeps running, answers status, and stops cleanly', async (t) => {
      const dir = tempDir(t);
      const socket = path.join(dir, 's.sock');
      const env = { ...process.env, PORT: String(await freePort()) };
      const primary = spawn(runtime.bin, [CLI, 'start', APP, '--workers', '1', '--socket', socket], { stdio: ['ignore', 'ignore', 'pipe'], env });
      t.after(() => void primary.kill('SIGKILL'));
      primary.stderr.destroy(); // its first line ("1 of 1 workers ready") meets a closed pipe
      const exited = once(primary, 'close');
      type Worker = { pid: number; state: string };
      // No event tells when workers are up: ask `bellwether status` until `wanted` holds, bounded.
      const workersOnce = (what: string, wanted: (workers: Worker[]) => boolean): Promise<Worker[]> =>
        bounded(what, (async () => {
          for (;;) {
            const status = await bellwether(['status', '--socket', socket, '--json'], { runtime });
            const workers = status.code === 0 ? (JSON.parse(status.stdout) as { workers: Worker[] }).workers : [];
            if (wanted(workers)) return workers;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })(), 20_000);
      const [worker] = await workersOnce('a worker ready', (workers) => workers.some((w) => w.state === 'ready'));
      // Another line to stderr: the worker killed and replaced.
      process.kill(worker!.pid, 'SIGKILL');
      await workersOnce('replacement ready', (workers) => workers.some((w) => w.pid !== worker!.pid && w.state === 'ready'));
      primary.kill('SIGTERM');
      assert.deepEqual(await bounded('stopped', exited, 20_000), [0, null]);
    });
  });

  describe(`bellwether errors under ${runtime.name}`, () => {
    const cli = (args: string[], env: NodeJS.ProcessEnv = {}, unprivileged = false) => bellwether(args, { runtime, env, unprivileged });

    test('usage errors: the mistake named in one line, exit 64, nothing started', async (t) => {
      const dir = tempDir(t);
      const cases: [string[], RegExp][] = [
        [[], /^bellwether: BW_ERR_USAGE: no command: use bellwether start, status, lock or leader \(bellwether --help\)$/m],
        [['frobnicate'], /BW_ERR_USAGE: unknown command "frobnicate": use bellwether start, status, lock or leader \(bellwether --help\)/],
        [['status', '--bogus'], /BW_ERR_USAGE: unknown option --bogus \(bellwether --help lists the options\)/],
        [['status', '--name'], /BW_ERR_USAGE: --name needs a value/],
        [['start', APP, '--timeout', '-1'], /BW_ERR_USAGE: --timeout needs a value \(one starting with a dash is written --timeout=VALUE\)/],
        [['status', '--json=yes'], /BW_ERR_USAGE: --json takes no value/],
        [['status', 'api'], /BW_ERR_USAGE: status takes no argument, got "api": bellwether status \[--name NAME\] \[--socket PATH\] \[--json\]/],
        [['lock'], /BW_ERR_USAGE: lock needs the singleton's name: bellwether lock <name> \[--lock-dir DIR\] \[--json\] \[--reset\]/],
        [['lock', 'a', 'b'], /BW_ERR_USAGE: lock takes one name, got "a" "b": bellwether lock <name>/],
        [['start'], /BW_ERR_USAGE: start needs the workers' entry script: bellwether start <entry\.js> \[options\] \[-- args for the entry\]/],
        [['status', '--lock-dir', dir], /BW_ERR_USAGE: --lock-dir is not an option of status \(its options: --name, --socket, --json\)/],
        [['lock', 'job', '--workers', '2'], /BW_ERR_USAGE: --workers is not an option of lock \(its options: --lock-dir, --json, --reset\)/],
        [['lock', '../x', '--lock-dir', dir], /BW_ERR_INVALID_NAME: singleton name must match \[A-Za-z0-9._-\]\{1,128\} and not be "\." or "\.\.", got "\.\.\/x"/],
        [['start', APP, '--workers', 'abc'], /BW_ERR_INVALID_OPTION: --workers must be a number, got "abc"/],
        [['start', APP, '--workers', '0'], /BW_ERR_INVALID_OPTION: --workers must be an integer from 1 to 1024, got 0/],
        [['start', APP, '--max-restarts', '1.5'], /BW_ERR_INVALID_OPTION: --max-restarts must be an integer number of restarts from 1 to 10000, got 1\.5/],
        [['start', APP, '--kill-timeout', '1e12'], /BW_ERR_INVALID_OPTION: --kill-timeout must be an integer number of milliseconds from 0 to 2147483647/],
        [['start', APP, '--heartbeat', '500', '--timeout', '400'], /BW_ERR_INVALID_OPTION: --heartbeat \(500 ms\) must be below --timeout \(400 ms\)/],
        [['start', APP, '--parent-pid', '0'], /BW_ERR_INVALID_OPTION: --parent-pid must be a process id \(a positive integer\), got "0"/],
        [['start', APP, '--name', 'a/b'], /BW_ERR_INVALID_NAME: supervisor name \(--name\) must match/],
        [['status', '--name', '.'], /BW_ERR_INVALID_NAME: supervisor name \(--name\) must match/],
        [['lock', 'job', '--lock-dir', ''], /BW_ERR_INVALID_OPTION: --lock-dir needs a value, got ""/],
      ];
      const results = await Promise.all(cases.map(([args]) => cli(args, { BELLWETHER_LOCK_DIR: dir })));
      cases.forEach(([, line], i) => assertFailure(results[i]!, 64, line));
      const json = await cli(['status', '--bogus', '--json']);
      assert.equal(json.code, 64);
      assert.deepEqual(JSON.parse(json.stdout), { error: { code: 'BW_ERR_USAGE', exitCode: 64, message: 'unknown option --bogus (bellwether --help lists the options)' } });
      assert.deepEqual(fs.readdirSync(dir), [], 'nothing created');
    });

    test('no supervisor running (no socket, no directory, a stale socket): exit 3, saying where it looked; --json gets an error object', async (t) => {
      const dir = tempDir(t);
      const none = path.join(dir, 'none');
      const noDir = await cli(['status'], { BELLWETHER_LOCK_DIR: none });
      assertFailure(noDir, 3, /^bellwether: BW_ERR_NOT_RUNNING: no supervisor named default is running: directory \S+\/none does not exist; start one with: bellwether start <entry\.js>$/m);
      assert.equal(fs.existsSync(none), false, 'status creates nothing');

      const noSocket = await cli(['status', '--name', 'api'], { BELLWETHER_LOCK_DIR: dir });
      assertFailure(noSocket, 3, new RegExp(`no supervisor named api is running: ${dir}/supervisor-api\\.sock does not exist; start one with: bellwether start <entry\\.js> --name api`));

      const stale = path.join(dir, 'stale.sock');
      await staleSocket(t, stale);
      assertFailure(
        await cli(['status', '--socket', stale]),
        3,
        new RegExp(`no supervisor is running on ${stale}: nobody listens there \\(a socket left by a supervisor that exited; the next one started with it replaces it\\)`),
      );
      assert.ok(fs.lstatSync(stale).isSocket(), 'status removes nothing');

      const json = await cli(['status', '--name', 'api', '--json'], { BELLWETHER_LOCK_DIR: dir });
      assert.equal(json.code, 3);
      assert.match(json.stderr, /^bellwether: BW_ERR_NOT_RUNNING: no supervisor named api is running[^\n]*\n$/);
      assert.deepEqual(JSON.parse(json.stdout), { error: { code: 'BW_ERR_NOT_RUNNING', exitCode: 3, message: noSocket.stderr.slice('bellwether: BW_ERR_NOT_RUNNING: '.length, -1) } });
    });

    test('a supervisor that does not answer in time: exit 75', async (t) => {
      const silent = path.join(tempDir(t), 'silent.sock');
      await serve(t, silent); // accepts, never answers
      assertFailure(
        await cli(['status', '--socket', silent]),
        75,
        new RegExp(`BW_ERR_NO_ANSWER: nothing answered on ${silent} within 2000 ms: the supervisor is busy or stuck \\(or another program listens there\\); try again, and see its log`),
      );
    });

    test('permission denied (the socket directory, the socket, a lock directory): exit 77', async (t) => {
      const dir = tempDir(t);
      const closed = path.join(dir, 'closed');
      fs.mkdirSync(closed);
      assertFailure(
        await underMode(closed, 0o000, () => cli(['status', '--socket', path.join(closed, 's.sock')], {}, true)),
        77,
        new RegExp(`BW_ERR_CONTROL_SOCKET_ACCESS: no permission to use control socket directory ${closed}: run bellwether status as the user that started the supervisor`),
      );

      const socket = path.join(dir, 'closed.sock');
      await serve(t, socket, (c) => c.end('{}\n'));
      assertFailure(
        await underMode(socket, 0o000, () => cli(['status', '--socket', socket], {}, true)),
        77,
        new RegExp(`BW_ERR_CONTROL_SOCKET_ACCESS: no permission to connect to ${socket} \\(EACCES\\): run bellwether status as the user that started the supervisor`),
      );

      const readOnly = path.join(dir, 'read-only');
      fs.mkdirSync(readOnly);
      const [lock, start] = await underMode(readOnly, 0o500, async () => [
        await cli(['lock', 'job', '--lock-dir', readOnly], {}, true),
        await cli(['start', APP, '--workers', '1', '--socket', path.join(readOnly, 's.sock')], {}, true),
      ]);
      assertFailure(lock!, 77, new RegExp(`BW_ERR_LOCK_ACCESS: no permission to use lock directory ${readOnly}`));
      assertFailure(
        start!,
        77,
        new RegExp(`BW_ERR_LOCK_ACCESS: no permission to use control socket directory ${readOnly}`),
      );
      assert.deepEqual(fs.readdirSync(readOnly), []);
    });

    test('missing input (entry script, lock directory, socket directory): exit 66; --json gets an error object', async (t) => {
      const dir = tempDir(t);
      assertFailure(await cli(['start', path.join(dir, 'missing.js')]), 66, new RegExp(`BW_ERR_ENTRY_NOT_FOUND: entry script ${dir}/missing\\.js does not exist or is not a file`));
      const none = path.join(dir, 'none');
      assertFailure(await cli(['lock', 'job', '--lock-dir', none]), 66, new RegExp(`BW_ERR_LOCK_DIR_MISSING: lock directory ${none} does not exist`));
      const file = path.join(dir, 'file');
      fs.writeFileSync(file, '');
      assertFailure(await cli(['lock', 'job', '--lock-dir', file]), 66, new RegExp(`BW_ERR_LOCK_DIR_NOT_DIRECTORY: lock directory ${file} is not a directory`));
      assertFailure(
        await cli(['start', APP, '--workers', '1', '--socket', path.join(none, 's.sock')]),
        66,
        new RegExp(`BW_ERR_LOCK_DIR_MISSING: control socket directory ${none} does not exist`),
      );
      const json = await cli(['lock', 'job', '--lock-dir', none, '--json']);
      assert.equal(json.code, 66);
      assert.deepEqual(JSON.parse(json.stdout), { error: { code: 'BW_ERR_LOCK_DIR_MISSING', exitCode: 66, message: `lock directory ${none} does not exist` } });
    });

    test('paths refused (not a socket, too long, a symlinked lock file): exit 78; a corrupt lock file: 65; flock(1) unavailable: 69', async (t) => {
      const dir = tempDir(t);
      const plain = path.join(dir, 'plain');
      fs.writeFileSync(plain, 'data');
      assertFailure(await cli(['status', '--socket', plain]), 78, new RegExp(`BW_ERR_CONTROL_SOCKET_UNSAFE: ${plain} is not a socket: no supervisor's control socket \\(check --socket\\)`));
      const long = path.join(dir, 'n'.repeat(120));
      assertFailure(await cli(['status', '--socket', long]), 78, /BW_ERR_CONTROL_SOCKET_UNSAFE: control socket path \S+ is \d+ bytes; a Unix socket path holds at most 107/);

      const links = path.join(dir, 'links');
      fs.mkdirSync(links);
      fs.symlinkSync(plain, path.join(links, 'job.lock'));
      assertFailure(await cli(['lock', 'job', '--lock-dir', links]), 78, /BW_ERR_LOCK_FILE_UNSAFE: lock file \S+job\.lock is a symlink; refusing to follow it/);

      const corrupt = path.join(dir, 'corrupt');
      fs.mkdirSync(corrupt);
      fs.writeFileSync(path.join(corrupt, 'job.lock'), 'not a record', { mode: 0o600 });
      assertFailure(await cli(['lock', 'job', '--lock-dir', corrupt]), 65, /BW_ERR_LOCK_FILE_CORRUPT: lock file \S+job\.lock does not hold a bellwether fencing record \("not a record"\); `bellwether lock <name> --reset` rewrites it/);

      assertFailure(
        await cli(['lock', 'job', '--lock-dir', corrupt, '--reset'], { BELLWETHER_FLOCK: 'flock' }),
        69,
        /BW_ERR_FLOCK_UNAVAILABLE: BELLWETHER_FLOCK=flock is not an absolute path to an executable regular file/,
      );
      assert.equal(fs.readFileSync(path.join(corrupt, 'job.lock'), 'utf8'), 'not a record', 'nothing reset');
    });
  });
}
