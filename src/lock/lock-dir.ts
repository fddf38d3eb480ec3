import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';

/** `$XDG_RUNTIME_DIR/bellwether` when set (per-user, tmpfs), else `<tmpdir>/bellwether-<uid>`. */
export function defaultLockDir(): string {
  const runtimeDir = process.env['XDG_RUNTIME_DIR'];
  if (runtimeDir) return path.join(runtimeDir, 'bellwether');
  return path.join(os.tmpdir(), `bellwether-${process.getuid?.() ?? 'user'}`);
}

/**
 * Makes sure `dir` is a directory only this user can place files in. The
 * default directory is created (0700); an explicit one must already exist.
 * Throws a BellwetherError; nothing is locked yet when it does.
 */
export function prepareLockDir(dir: string, create: boolean): string {
  const absolute = path.resolve(dir);
  if (create) {
    try {
      fs.mkdirSync(absolute, { mode: 0o700 });
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw lockDirError(absolute, err);
    }
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(absolute);
  } catch (err) {
    throw lockDirError(absolute, err);
  }
  if (!stat.isDirectory()) {
    throw new BellwetherError(ErrorCodes.LOCK_DIR_NOT_DIRECTORY, `lock directory ${absolute} is not a directory`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new BellwetherError(
      ErrorCodes.LOCK_DIR_UNSAFE,
      `lock directory ${absolute} is owned by uid ${stat.uid}, not by this user (uid ${uid}): another user could replace its lock files`,
    );
  }
  const writableByOthers = (stat.mode & 0o022) !== 0;
  const sticky = (stat.mode & 0o1000) !== 0;
  if (writableByOthers && !sticky) {
    throw new BellwetherError(
      ErrorCodes.LOCK_DIR_UNSAFE,
      `lock directory ${absolute} is writable by group or others (mode ${(stat.mode & 0o7777).toString(8)}) without the sticky bit`,
    );
  }
  try {
    fs.accessSync(absolute, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw lockDirError(absolute, err);
  }
  return absolute;
}

export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function lockDirError(dir: string, err: unknown): BellwetherError {
  switch (errnoOf(err)) {
    case 'ENOENT':
      return new BellwetherError(ErrorCodes.LOCK_DIR_MISSING, `lock directory ${dir} does not exist`, { cause: err });
    case 'ENOTDIR':
      return new BellwetherError(ErrorCodes.LOCK_DIR_NOT_DIRECTORY, `lock directory ${dir} is not a directory`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new BellwetherError(ErrorCodes.LOCK_ACCESS, `no permission to use lock directory ${dir}`, { cause: err });
    default:
      return new BellwetherError(ErrorCodes.LOCK_ACCESS, `cannot use lock directory ${dir}: ${String(err)}`, { cause: err });
  }
}
