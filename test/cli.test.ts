import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { tempDir } from './helpers/temp.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('bellwether lock <name>: free, then held by another process, with the stored token', async (t) => {
  const dir = tempDir(t);
  assert.deepEqual(JSON.parse(cli('lock', 'job', '--lock-dir', dir, '--json').stdout), { file: path.join(dir, 'job.lock'), held: false });
  assert.equal(cli('lock', 'job', '--lock-dir', dir).status, 3);

  // A holder from outside: flock(1), as an operator pausing the job.
  const operator = spawn('flock', ['-o', path.join(dir, 'job.lock'), '-c', 'echo held; exec cat']);
  t.after(() => operator.kill('SIGKILL'));
  await once(operator.stdout, 'data');
  const held = cli('lock', 'job', '--lock-dir', dir);
  assert.equal(held.status, 0);
  assert.match(held.stdout, /^job: running \(lock held\); never held/);
});

test('bellwether: help, version, bad input', () => {
  assert.match(cli('--help').stdout, /Usage: bellwether <command>/);
  assert.match(cli('--version').stdout, /^\d+\.\d+\.\d+\n$/);
  const bad = cli('lock', '../x', '--lock-dir', '/tmp');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /BW_ERR_INVALID_NAME/);
  assert.equal(cli('frobnicate').status, 2);
});
