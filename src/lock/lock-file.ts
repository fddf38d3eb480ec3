import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { lockNowIfFree } from './flock-wait.js';
import { checkDirectory, errnoOf } from './lock-dir.js';

/**
 * Opens (creating 0600) the lock file without following a symlink, and checks
 * it is a regular file of ours, readable and writable by us alone (a file
 * others could open could be locked by them: mode bits of group and others
 * are removed). Checked once more after the open: the file is still the one
 * at `file`, in a directory still safe. The descriptor is what flock(2) locks.
 */
export function openLockFile(file: string): number {
  const fd = openChecked(file);
  try {
    checkDirectory(path.dirname(file));
    if (!isLockedPath(fd, file)) throw new BellwetherError(ErrorCodes.LOCK_FILE_UNSAFE, `lock file ${file} was replaced while it was opened`);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/** Whether `fd` is (still) the file at `file`: same device and inode, not deleted, not replaced. */
export function isLockedPath(fd: number, file: string): boolean {
  try {
    const open = fs.fstatSync(fd);
    const now = fs.lstatSync(file);
    return open.dev === now.dev && open.ino === now.ino;
  } catch {
    return false;
  }
}

function openChecked(file: string): number {
  let fd: number;
  try {
    const { O_RDWR, O_CREAT, O_NOFOLLOW } = fs.constants;
    fd = fs.openSync(file, O_RDWR | O_CREAT | O_NOFOLLOW, 0o600);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ELOOP') {
      throw new BellwetherError(ErrorCodes.LOCK_FILE_UNSAFE, `lock file ${file} is a symlink; refusing to follow it`, { cause: err });
    }
    if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') {
      throw new BellwetherError(ErrorCodes.LOCK_ACCESS, `no permission to open lock file ${file}`, { cause: err });
    }
    if (errno === 'EISDIR') {
      throw new BellwetherError(ErrorCodes.LOCK_FILE_UNSAFE, `lock file ${file} is a directory`, { cause: err });
    }
    throw new BellwetherError(ErrorCodes.LOCK_ACCESS, `cannot open lock file ${file}: ${String(err)}`, { cause: err });
  }
  const stat = fs.fstatSync(fd);
  const uid = process.getuid?.();
  let problem: string | undefined;
  if (!stat.isFile()) problem = 'is not a regular file';
  else if (uid !== undefined && stat.uid !== uid) problem = `is owned by uid ${stat.uid}, not by this user (uid ${uid})`;
  if (problem) {
    fs.closeSync(fd);
    throw new BellwetherError(ErrorCodes.LOCK_FILE_UNSAFE, `lock file ${file} ${problem}`);
  }
  // Created by flock(1) under a loose umask, say: ours, so made ours alone.
  if ((stat.mode & 0o077) !== 0) {
    try {
      fs.fchmodSync(fd, 0o600);
    } catch (err) {
      fs.closeSync(fd);
      throw new BellwetherError(
        ErrorCodes.LOCK_FILE_UNSAFE,
        `lock file ${file} is open to other users (mode ${(stat.mode & 0o777).toString(8)}) and cannot be made 0600 here: ${String(err)}`,
        { cause: err },
      );
    }
  }
  return fd;
}

/**
 * The fencing record: one fixed-width JSON line, so that rewriting it is a
 * single pwrite at offset 0 (no truncate window in which a crash could leave
 * half a number behind).
 */
const RECORD_BYTES = 64;

export interface FencingRecord {
  token: number;
  pid: number;
}

export function readFencingRecord(fd: number, file: string): FencingRecord | undefined {
  const buffer = Buffer.alloc(4096);
  const length = fs.readSync(fd, buffer, 0, buffer.length, 0);
  const text = buffer.subarray(0, length).toString('utf8').trim();
  if (text === '') return undefined;
  try {
    const record = JSON.parse(text) as Partial<FencingRecord>;
    if (Number.isSafeInteger(record.token) && (record.token as number) >= 0) {
      return { token: record.token as number, pid: Number(record.pid) };
    }
  } catch {
    // falls through to the error below
  }
  throw new BellwetherError(
    ErrorCodes.LOCK_FILE_CORRUPT,
    `lock file ${file} does not hold a bellwether fencing record (${JSON.stringify(text.slice(0, 80))}); \`bellwether lock <name> --reset\` rewrites it once nobody holds it`,
  );
}

/**
 * Called only while holding the lock: the next token is the stored one plus
 * one, and never below `floor` (the highest this process has seen: a file
 * deleted or truncated under it must not make its count go back).
 */
export function advanceFencingToken(fd: number, file: string, floor = 0): number {
  const token = Math.max(readFencingRecord(fd, file)?.token ?? 0, floor) + 1;
  writeFencingRecord(fd, token);
  return token;
}

export function writeFencingRecord(fd: number, token: number): void {
  const record = fencingRecordBytes(token);
  fs.writeSync(fd, record, 0, record.length, 0);
}

function fencingRecordBytes(token: number): Buffer {
  const line = JSON.stringify({ token, pid: process.pid } satisfies FencingRecord);
  return Buffer.from(line.padEnd(RECORD_BYTES - 1, ' ') + '\n', 'utf8');
}

/**
 * Runs at start(), before any wait, the file work a takeover begins with,
 * changing nothing: a read of the record and a write of no bytes (which
 * leaves a regular file as it was, times included). A process's first call
 * of each costs far more than the next ones (measured in a takeover on Node:
 * the token's read and write took 0.5-0.6 ms), and would otherwise fall
 * between the takeover and the job's start. Its errors are not start()'s:
 * a record that is not ours, or a failing write, is said when the lock is taken.
 */
export function rehearseTakeover(fd: number, file: string): void {
  try {
    readFencingRecord(fd, file);
  } catch {
    // said when the lock is taken, as before
  }
  try {
    fencingRecordBytes(0);
    fs.writeSync(fd, Buffer.alloc(0), 0, 0, 0);
  } catch {
    // said when the lock is taken, as before
  }
}

/**
 * Puts a lock file holding `token` back at `file` after it was deleted, so
 * that the count goes on, and locked, so that a newcomer waits until the
 * holder has let go. The file is made under an unpredictable temporary
 * name, locked and written there, then linked into place: it appears with
 * its record in it and its lock taken, and never replaces a file someone
 * else created meanwhile. Returns its descriptor (holding the lock), or
 * undefined when it could not be put back.
 */
export function republishLockFile(file: string, token: number): number | undefined {
  const temporary = `${file}.${randomBytes(8).toString('hex')}.tmp`;
  let fd: number | undefined;
  let created = false;
  try {
    const { O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
    fd = fs.openSync(temporary, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    created = true;
    // Nobody else can know the name yet: the lock is free, and ours once taken.
    if (!lockNowIfFree(fd)) throw new Error('not locked');
    writeFencingRecord(fd, token);
    fs.linkSync(temporary, file);
    const kept = fd;
    fd = undefined;
    return kept;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    if (created) fs.rmSync(temporary, { force: true });
  }
}
