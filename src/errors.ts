/**
 * The one error class bellwether throws or emits. `code` is stable and safe to
 * branch on; `cause` keeps the underlying error (an errno, a ZooKeeper code,
 * a user callback's exception).
 */
export const ErrorCodes = {
  /** An option has the wrong type or a value out of range. */
  INVALID_OPTION: 'BW_ERR_INVALID_OPTION',
  /** A singleton or election name is not `[A-Za-z0-9._-]{1,128}`. */
  INVALID_NAME: 'BW_ERR_INVALID_NAME',
  /** An explicitly given lock directory does not exist. */
  LOCK_DIR_MISSING: 'BW_ERR_LOCK_DIR_MISSING',
  /** The lock directory path exists but is not a directory. */
  LOCK_DIR_NOT_DIRECTORY: 'BW_ERR_LOCK_DIR_NOT_DIRECTORY',
  /** The lock directory is owned by another user, or writable by group/others without the sticky bit. */
  LOCK_DIR_UNSAFE: 'BW_ERR_LOCK_DIR_UNSAFE',
  /** The lock directory or lock file cannot be created, read or written by this user. */
  LOCK_ACCESS: 'BW_ERR_LOCK_ACCESS',
  /** The lock file is a symlink, not a regular file, or owned by another user. */
  LOCK_FILE_UNSAFE: 'BW_ERR_LOCK_FILE_UNSAFE',
  /** The lock file holds something that is not a bellwether fencing record. */
  LOCK_FILE_CORRUPT: 'BW_ERR_LOCK_FILE_CORRUPT',
  /** The held lock file was deleted or replaced: the holder stopped (the singleton's `demoted` reason is `lost`). */
  LOCK_LOST: 'BW_ERR_LOCK_LOST',
  /** No way to wait for the host lock: util-linux's `flock(1)` is missing and fs-ext (Node) or libc through bun:ffi (Bun) cannot be loaded, or the waiter could not be run. */
  FLOCK_UNAVAILABLE: 'BW_ERR_FLOCK_UNAVAILABLE',
  /** The object was closed: it cannot be started again. */
  CLOSED: 'BW_ERR_CLOSED',
  /** The object was already started. */
  ALREADY_STARTED: 'BW_ERR_ALREADY_STARTED',
  /** A user callback (a singleton's `run`, a hook, a handler) threw or rejected. */
  CALLBACK_FAILED: 'BW_ERR_CALLBACK_FAILED',
  /** A ZooKeeper connect string is malformed (`host:port[,host:port...][/chroot]`). */
  INVALID_CONNECT_STRING: 'BW_ERR_INVALID_CONNECT_STRING',
  /** A ZooKeeper path is not absolute, ends with a slash, or has an empty, "." or ".." segment. */
  INVALID_PATH: 'BW_ERR_INVALID_PATH',
  /** No ZooKeeper session could be established within `connectTimeout`. */
  ZK_CONNECT_TIMEOUT: 'BW_ERR_ZK_CONNECT_TIMEOUT',
  /** The node does not exist. */
  ZK_NO_NODE: 'BW_ERR_ZK_NO_NODE',
  /** The node already exists. */
  ZK_NODE_EXISTS: 'BW_ERR_ZK_NODE_EXISTS',
  /** The expected version did not match. */
  ZK_BAD_VERSION: 'BW_ERR_ZK_BAD_VERSION',
  /** The node has children. */
  ZK_NOT_EMPTY: 'BW_ERR_ZK_NOT_EMPTY',
  /** Ephemeral nodes cannot have children. */
  ZK_NO_CHILDREN_FOR_EPHEMERALS: 'BW_ERR_ZK_NO_CHILDREN_FOR_EPHEMERALS',
  /** The connection was lost before the answer came: the operation may or may not have happened. */
  ZK_CONNECTION_LOSS: 'BW_ERR_ZK_CONNECTION_LOSS',
  /** The session expired: its ephemeral nodes are gone. */
  ZK_SESSION_EXPIRED: 'BW_ERR_ZK_SESSION_EXPIRED',
  /** Not authorised by the node's ACL. */
  ZK_NO_AUTH: 'BW_ERR_ZK_NO_AUTH',
  /** The server refused the session's credentials. */
  ZK_AUTH_FAILED: 'BW_ERR_ZK_AUTH_FAILED',
  /** ZooKeeper refused an ACL (the `auth` scheme from a session without credentials, an id it cannot parse). */
  ZK_INVALID_ACL: 'BW_ERR_ZK_INVALID_ACL',
  /** Any other ZooKeeper error; `cause` carries ZooKeeper's code and name. */
  ZK_ERROR: 'BW_ERR_ZK_ERROR',
  /** The entry script of the workers does not exist or is not a file. */
  ENTRY_NOT_FOUND: 'BW_ERR_ENTRY_NOT_FOUND',
  /** A worker slot exited too often within the restart window and was given up. */
  CRASH_LOOP: 'BW_ERR_CRASH_LOOP',
  /**
   * Refused because it is running: another supervisor of the same name
   * answers on its control socket, or (`bellwether lock --reset`) the
   * singleton's lock is held.
   */
  ALREADY_RUNNING: 'BW_ERR_ALREADY_RUNNING',
  /** A rolling restart stopped: a replacement did not become ready, so the old worker was kept. */
  ROLLOUT_FAILED: 'BW_ERR_ROLLOUT_FAILED',
  /** A singleton's task did not settle within stopTimeout of the end of leadership: its thread was terminated. */
  TASK_TERMINATED: 'BW_ERR_TASK_TERMINATED',
  /**
   * The control socket's path is unusable: too long for a Unix socket, or
   * something other than a socket is there (never removed), or its directory
   * or the socket itself belongs to another user, or what answers there is
   * not a supervisor's status.
   */
  CONTROL_SOCKET_UNSAFE: 'BW_ERR_CONTROL_SOCKET_UNSAFE',
  /** This user may not use the control socket or its directory (EACCES, EPERM). */
  CONTROL_SOCKET_ACCESS: 'BW_ERR_CONTROL_SOCKET_ACCESS',
  /** No supervisor answers on the control socket (none of that name is running). */
  NOT_RUNNING: 'BW_ERR_NOT_RUNNING',
  /** Something listens on the control socket but sent no status in time: a busy or stuck supervisor. */
  NO_ANSWER: 'BW_ERR_NO_ANSWER',
  /** The `bellwether` command line is not understood: an unknown command or option, a missing or extra argument. */
  USAGE: 'BW_ERR_USAGE',
  /** The requested feature is not available in this build. */
  UNSUPPORTED: 'BW_ERR_UNSUPPORTED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class BellwetherError extends Error {
  override readonly name = 'BellwetherError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Wraps anything thrown by user code so that listeners always get a BellwetherError. */
export function callbackFailed(what: string, cause: unknown): BellwetherError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new BellwetherError(ErrorCodes.CALLBACK_FAILED, `${what} failed: ${detail}`, { cause });
}
