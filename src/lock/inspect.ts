import fs from 'node:fs';
import path from 'node:path';
import { checkName } from '../validate.js';
import { lockNowIfFree } from './flock-wait.js';
import { prepareLockDir } from './lock-dir.js';
import { openLockFile, readFencingRecord, writeFencingRecord } from './lock-file.js';

export interface LockReport {
  file: string;
  /** Whether some process holds the lock right now (bellwether, flock(1), anything using flock(2)). */
  held: boolean;
  /** Processes queued for the lock (blocked in flock(2)). */
  waiting: number;
  /**
   * Their pids, as the kernel lists them. A bellwether job waits through a
   * child process (flock(1) or the built-in waiter): the job's process is its parent.
   */
  waitingPids: number[];
  /** The last holder's fencing token and pid, as stored in the file; absent before the first holder. */
  lastToken?: number;
  lastPid?: number;
}

/** What an operator wants to know about a host job: is it running, who ran it last, who waits. */
export function inspectHostLock(name: string, lockDir: string, isDefaultDir: boolean): LockReport {
  const file = lockFileOf(name, lockDir, isDefaultDir);
  const fd = openLockFile(file);
  try {
    const record = readFencingRecord(fd, file);
    const { held, waitingPids } = flockState(fs.fstatSync(fd));
    return { file, held, waiting: waitingPids.length, waitingPids, ...(record ? { lastToken: record.token, lastPid: record.pid } : {}) };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Restarts the fencing count (the next holder gets token 1): a deliberate
 * operation, done only while nobody holds the lock, holding it meanwhile.
 * `reset` is false, nothing changed, when the lock is held.
 */
export function resetHostLock(name: string, lockDir: string, isDefaultDir: boolean): { file: string; reset: boolean } {
  const file = lockFileOf(name, lockDir, isDefaultDir);
  const fd = openLockFile(file);
  try {
    if (!lockNowIfFree(fd)) return { file, reset: false };
    writeFencingRecord(fd, 0);
    return { file, reset: true };
  } finally {
    fs.closeSync(fd);
  }
}

function lockFileOf(name: string, lockDir: string, isDefaultDir: boolean): string {
  checkName(name, 'singleton name');
  return path.join(prepareLockDir(lockDir, isDefaultDir), `${name}.lock`);
}

/**
 * The kernel's view (/proc/locks) of flock(2) locks on one file, found by
 * device and inode: the holder, and the requests blocked behind it (lines
 * with "->"). Nothing is locked to find out.
 */
function flockState(stat: fs.Stats): { held: boolean; waitingPids: number[] } {
  const wanted = `${hex2(major(stat.dev))}:${hex2(minor(stat.dev))}:${stat.ino}`;
  let held = false;
  const waitingPids: number[] = [];
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    const blocked = fields[1] === '->';
    const rest = blocked ? fields.slice(2) : fields.slice(1);
    // rest: FLOCK ADVISORY WRITE <pid> <maj:min:inode> <start> <end>
    if (rest[0] !== 'FLOCK' || rest[4] !== wanted) continue;
    if (blocked) waitingPids.push(Number(rest[3]));
    else held = true;
  }
  return { held, waitingPids };
}

/** Linux's encoding of dev_t (as glibc's major()/minor()). */
function major(dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn));
}

function minor(dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
