/**
 * Runs after every other test file (the test runner orders files by path: keep the zz- name): no process
 * started by the suite may still be running. `npm test` marks the run with
 * BW_TEST_SUITE in the environment, which every process the suite starts
 * inherits (fixtures, supervisor primaries and their workers, flock
 * waiters, ZooKeeper servers, processes inside network namespaces the
 * tests create), so the leftovers are found by that mark in
 * /proc/<pid>/environ, whoever their parent now is.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { test } from 'node:test';
import { gone } from './helpers/processes.js';

const MARK = process.env['BW_TEST_SUITE'];

/** This process and its ancestors (the test runner, npm) carry the mark too, legitimately. */
function ancestors(): Set<number> {
  const chain = new Set<number>();
  for (let pid = process.pid; pid > 1 && !chain.has(pid); ) {
    chain.add(pid);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return chain;
}

function marked(mark: string): number[] {
  const own = ancestors();
  const wanted = `BW_TEST_SUITE=${mark}`;
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || own.has(pid)) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(wanted)) pids.push(pid);
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return pids;
}

function describe(pid: number): string {
  try {
    return `${pid}: ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()}`;
  } catch {
    return `${pid}: (gone)`;
  }
}

test('no process started by the test suite is still running', async () => {
  assert.ok(MARK, 'BW_TEST_SUITE is not set: run the suite with `npm test`, which marks the processes it starts');
  // Workers fence themselves off within 250 ms of their primary's death, and a
  // SIGKILLed process may still be exiting: give them a bounded moment.
  const left = await gone(marked(MARK), 5000);
  const report = left.map(describe);
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  assert.deepEqual(report, [], `processes left running by the suite (now killed):\n${report.join('\n')}`);
});

test('the check sees a marked process, and only until it is gone', async () => {
  assert.ok(MARK);
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  try {
    assert.ok(marked(MARK).includes(child.pid!), 'a process this test started is found by its mark');
  } finally {
    child.kill('SIGKILL');
  }
  await exited;
  assert.equal(marked(MARK).includes(child.pid!), false);
});
