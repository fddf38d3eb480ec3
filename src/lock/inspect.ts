import fs from 'node:fs';
import path from 'node:path';
import { checkName } from '../validate.js';
import { lockNowIfFree } from './flock-wait.js';
import { flockState } from './kernel-locks.js';
import { prepareLockDir } from './lock-dir.js';
import { openLockFile, readFencingRecord, writeFencingRecord } from './lock-file.js';

export interface LockReport {
  file: string;
  /** Whether some process holds the lock right now (bellwether, flock(1), anything using flock(2)). */
  held: boolean;
  /** Processes queued for the lock (blocked in flock(2)). */
  waiting: number;
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
    const { held, waiting } = flockState(fs.fstatSync(fd));
    return { file, held, waiting, ...(record ? { lastToken: record.token, lastPid: record.pid } : {}) };
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
