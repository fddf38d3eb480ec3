import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { checkName } from '../validate.js';
import { flockPrograms } from './flock-wait.js';
import { prepareLockDir } from './lock-dir.js';
import { openLockFile, readFencingRecord } from './lock-file.js';

export interface LockReport {
  file: string;
  /** Whether some process holds the lock right now (bellwether, flock(1), anything using flock(2)). */
  held: boolean;
  /** The last holder's fencing token and pid, as stored in the file; absent before the first holder. */
  lastToken?: number;
  lastPid?: number;
}

/** What an operator wants to know about a host job: is it running, who ran it last. */
export function inspectHostLock(name: string, lockDir: string, createDir: boolean): LockReport {
  checkName(name, 'singleton name');
  const file = path.join(prepareLockDir(lockDir, createDir), `${name}.lock`);
  const fd = openLockFile(file);
  try {
    const record = readFencingRecord(fd, file);
    // flock -n -E 75: exit 75 when held by someone else, 0 when free (released at once).
    const probe = spawnSync(flockPrograms().flock, ['-n', '-E', '75', file, 'true']);
    if (probe.status !== 0 && probe.status !== 75) throw new Error(`flock(1) probe failed with status ${probe.status}`);
    return { file, held: probe.status === 75, ...(record ? { lastToken: record.token, lastPid: record.pid } : {}) };
  } finally {
    fs.closeSync(fd);
  }
}
