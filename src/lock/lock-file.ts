import fs from 'node:fs';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { errnoOf } from './lock-dir.js';

/**
 * Opens (creating 0600) the lock file without following a symlink, and checks
 * it is a regular file of ours. The descriptor is what flock(2) locks.
 */
export function openLockFile(file: string): number {
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
    `lock file ${file} does not hold a bellwether fencing record (${JSON.stringify(text.slice(0, 80))}); delete it to reset the token`,
  );
}

/** Called only while holding the lock: the next token is the stored one plus one. */
export function advanceFencingToken(fd: number, file: string): number {
  const token = (readFencingRecord(fd, file)?.token ?? 0) + 1;
  const line = JSON.stringify({ token, pid: process.pid } satisfies FencingRecord);
  const record = Buffer.from(line.padEnd(RECORD_BYTES - 1, ' ') + '\n', 'utf8');
  fs.writeSync(fd, record, 0, record.length, 0);
  return token;
}
