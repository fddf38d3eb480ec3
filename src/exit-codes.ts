import { GIVEN_UP_EXIT_CODE, ORPHAN_EXIT_CODE } from './cluster/protocol.js';
import { BellwetherError, type ErrorCode, ErrorCodes } from './errors.js';

/**
 * The exit codes of the `bellwether` command, one per class of outcome
 * (README, "Exit codes"). Answers about state are small numbers (3 "not
 * running" as in LSB init scripts' status); failures follow sysexits.h.
 */
export const EXIT = {
  /** Done; `status`: the supervisor answered; `lock`: the lock is held. */
  OK: 0,
  /** A failure of no class below: a bug, to be reported with its message. */
  FAILED: 1,
  /** `status`: no supervisor of that name runs; `lock`: nobody holds the lock; `leader`: no acknowledged leader. */
  NOT_RUNNING: 3,
  /** `start`: every worker slot was given up after crash loops. */
  GIVEN_UP: GIVEN_UP_EXIT_CODE,
  /** Refused because it runs: `start` of a name already running, `lock --reset` while the lock is held. */
  RUNNING: 5,
  /** EX_USAGE: an unknown command or option, a missing or extra argument, a bad value or name. */
  USAGE: 64,
  /** EX_DATAERR: a lock file holds something other than a fencing record. */
  DATA: 65,
  /** EX_NOINPUT: the entry script, the lock directory or the control socket's directory is missing. */
  NO_INPUT: 66,
  /** EX_NOHOST: `leader`: no ZooKeeper server of the connect string gave a session, or answered, within `--timeout`. */
  ZK_UNREACHABLE: 68,
  /** EX_UNAVAILABLE: no way to wait for the host lock (neither util-linux's flock(1) nor fs-ext / bun:ffi). */
  UNAVAILABLE: 69,
  /** `start`: stopped because its parent was gone (`--stop-with-parent`, `--parent-pid`). */
  ORPHANED: ORPHAN_EXIT_CODE,
  /** EX_TEMPFAIL: the supervisor did not answer in time (busy or stuck): try again. */
  NO_ANSWER: 75,
  /** EX_NOPERM: permission denied on the control socket, its directory, the lock directory or file; an ACL on an election's nodes. */
  NO_PERMISSION: 77,
  /** EX_CONFIG: a path refused: not a socket, another user's, open to others, too long, another program's. */
  PATH_REFUSED: 78,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.NOT_RUNNING]: EXIT.NOT_RUNNING,
  [ErrorCodes.ALREADY_RUNNING]: EXIT.RUNNING,
  [ErrorCodes.USAGE]: EXIT.USAGE,
  [ErrorCodes.INVALID_OPTION]: EXIT.USAGE,
  [ErrorCodes.INVALID_NAME]: EXIT.USAGE,
  [ErrorCodes.INVALID_CONNECT_STRING]: EXIT.USAGE,
  [ErrorCodes.INVALID_PATH]: EXIT.USAGE,
  [ErrorCodes.LOCK_FILE_CORRUPT]: EXIT.DATA,
  [ErrorCodes.ENTRY_NOT_FOUND]: EXIT.NO_INPUT,
  [ErrorCodes.LOCK_DIR_MISSING]: EXIT.NO_INPUT,
  [ErrorCodes.LOCK_DIR_NOT_DIRECTORY]: EXIT.NO_INPUT,
  [ErrorCodes.ZK_CONNECT_TIMEOUT]: EXIT.ZK_UNREACHABLE,
  [ErrorCodes.ZK_CONNECTION_LOSS]: EXIT.ZK_UNREACHABLE,
  [ErrorCodes.FLOCK_UNAVAILABLE]: EXIT.UNAVAILABLE,
  [ErrorCodes.NO_ANSWER]: EXIT.NO_ANSWER,
  [ErrorCodes.LOCK_ACCESS]: EXIT.NO_PERMISSION,
  [ErrorCodes.CONTROL_SOCKET_ACCESS]: EXIT.NO_PERMISSION,
  [ErrorCodes.ZK_NO_AUTH]: EXIT.NO_PERMISSION,
  [ErrorCodes.CONTROL_SOCKET_UNSAFE]: EXIT.PATH_REFUSED,
  [ErrorCodes.LOCK_DIR_UNSAFE]: EXIT.PATH_REFUSED,
  [ErrorCodes.LOCK_FILE_UNSAFE]: EXIT.PATH_REFUSED,
};

/** The exit code for a failure: by its BellwetherError code, FAILED for anything else. */
export function exitCodeOf(err: unknown): number {
  return (err instanceof BellwetherError && BY_CODE[err.code]) || EXIT.FAILED;
}
