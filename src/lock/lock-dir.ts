import fs from 'node:fs';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';

/** Names the default lock directory for every process that inherits it (a supervisor's workers do). */
export const LOCK_DIR_ENV = 'BELLWETHER_LOCK_DIR';

/**
 * The per-user lock directory: `$BELLWETHER_LOCK_DIR` when set, else
 * `/tmp/bellwether-<uid>`. Deliberately not `$XDG_RUNTIME_DIR` nor
 * `$TMPDIR`: they depend on how a process was started (a login shell has
 * them, cron and system units often do not), and two processes of one job
 * that pick different directories lock different files: two runners.
 */
export function defaultLockDir(): string {
  const configured = process.env[LOCK_DIR_ENV];
  if (configured) return path.resolve(configured);
  return path.join('/tmp', `bellwether-${process.getuid?.() ?? 'user'}`);
}

/**
 * Makes sure `dir` is a directory only this user can place files in, and
 * returns its real path: everything after uses that path, so a symlink in
 * the way cannot be swapped later. The default directory is created (0700)
 * and must not be a symlink at all; an explicit one must already exist (a
 * symlink to it is resolved once, and the real directory is checked).
 * Throws a BellwetherError; nothing is locked yet when it does. `what`
 * names the directory in its messages.
 */
export function prepareLockDir(dir: string, isDefault: boolean, what = 'lock directory'): string {
  const absolute = path.resolve(dir);
  if (isDefault) {
    try {
      fs.mkdirSync(absolute, { mode: 0o700 });
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw lockDirError(absolute, err, what);
    }
    let link: fs.Stats;
    try {
      link = fs.lstatSync(absolute);
    } catch (err) {
      throw lockDirError(absolute, err, what);
    }
    if (link.isSymbolicLink()) {
      throw new BellwetherError(
        ErrorCodes.LOCK_DIR_UNSAFE,
        `default ${what} ${absolute} is a symlink (owned by uid ${link.uid}), which bellwether never creates: ${RECOVER}`,
      );
    }
  }
  let real: string;
  try {
    real = fs.realpathSync(absolute);
  } catch (err) {
    throw lockDirError(absolute, err, what);
  }
  checkDirectory(real, absolute, isDefault, what);
  return real;
}

const RECOVER = `set the singleton's lockDir (or --lock-dir), or ${LOCK_DIR_ENV} for every process of the job, to a directory of yours; or have it removed (as root) if nobody should own it`;

/**
 * The directory is this user's, and nobody else can create, rename or
 * delete entries in it. Checked on the real path, with lstat (no link is
 * followed), and again after every open by the callers that care.
 */
export function checkDirectory(real: string, given = real, isDefault = false, what = 'lock directory'): void {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(real);
  } catch (err) {
    throw lockDirError(given, err, what);
  }
  const shown = real === given ? given : `${given} (${real})`;
  if (!stat.isDirectory()) {
    throw new BellwetherError(ErrorCodes.LOCK_DIR_NOT_DIRECTORY, `${what} ${shown} is not a directory`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new BellwetherError(
      ErrorCodes.LOCK_DIR_UNSAFE,
      isDefault
        ? `default ${what} ${shown} is owned by uid ${stat.uid}, not by this user (uid ${uid}): another user created it first, and could replace its files; ${RECOVER}`
        : `${what} ${shown} is owned by uid ${stat.uid}, not by this user (uid ${uid}): another user could replace its files`,
    );
  }
  const writableByOthers = (stat.mode & 0o022) !== 0;
  const sticky = (stat.mode & 0o1000) !== 0;
  if (writableByOthers && !sticky) {
    throw new BellwetherError(
      ErrorCodes.LOCK_DIR_UNSAFE,
      `${what} ${shown} is writable by group or others (mode ${(stat.mode & 0o7777).toString(8)}) without the sticky bit`,
    );
  }
  try {
    fs.accessSync(real, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw lockDirError(given, err, what);
  }
}

export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function lockDirError(dir: string, err: unknown, what: string): BellwetherError {
  switch (errnoOf(err)) {
    case 'ENOENT':
      return new BellwetherError(ErrorCodes.LOCK_DIR_MISSING, `${what} ${dir} does not exist`, { cause: err });
    case 'ENOTDIR':
      return new BellwetherError(ErrorCodes.LOCK_DIR_NOT_DIRECTORY, `${what} ${dir} is not a directory`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new BellwetherError(ErrorCodes.LOCK_ACCESS, `no permission to use ${what} ${dir}`, { cause: err });
    default:
      return new BellwetherError(ErrorCodes.LOCK_ACCESS, `cannot use ${what} ${dir}: ${String(err)}`, { cause: err });
  }
}
