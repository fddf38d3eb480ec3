import zookeeper from 'node-zookeeper-client';
import { BellwetherError, type ErrorCode, ErrorCodes } from '../errors.js';

const { Exception } = zookeeper;

const BY_ZK_CODE = new Map<number, ErrorCode>([
  [Exception.NO_NODE, ErrorCodes.ZK_NO_NODE],
  [Exception.NODE_EXISTS, ErrorCodes.ZK_NODE_EXISTS],
  [Exception.BAD_VERSION, ErrorCodes.ZK_BAD_VERSION],
  [Exception.NOT_EMPTY, ErrorCodes.ZK_NOT_EMPTY],
  [Exception.NO_CHILDREN_FOR_EPHEMERALS, ErrorCodes.ZK_NO_CHILDREN_FOR_EPHEMERALS],
  [Exception.CONNECTION_LOSS, ErrorCodes.ZK_CONNECTION_LOSS],
  [Exception.SESSION_EXPIRED, ErrorCodes.ZK_SESSION_EXPIRED],
  [Exception.NO_AUTH, ErrorCodes.ZK_NO_AUTH],
  [Exception.AUTH_FAILED, ErrorCodes.ZK_AUTH_FAILED],
  [Exception.INVALID_ACL, ErrorCodes.ZK_INVALID_ACL],
]);

/** The ZooKeeper error code behind an error from node-zookeeper-client, if any. */
export function zkCodeOf(err: unknown): number | undefined {
  const code = (err as { getCode?: () => number } | undefined)?.getCode?.();
  return typeof code === 'number' ? code : undefined;
}

/** node-zookeeper-client's exception for `code`, as it fails a request with. */
export function zkException(code: number): Error {
  return (Exception as unknown as { create(code: number): Error }).create(code);
}

/** Maps a node-zookeeper-client error to a BellwetherError; the original is kept as `cause`. */
export function fromZk(err: unknown, operation: string, path?: string): BellwetherError {
  if (err instanceof BellwetherError) return err;
  const zkCode = zkCodeOf(err);
  const code = (zkCode !== undefined && BY_ZK_CODE.get(zkCode)) || ErrorCodes.ZK_ERROR;
  const where = path === undefined ? operation : `${operation} ${path}`;
  return new BellwetherError(code, `${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/**
 * The connection or the session went away (or the session was closed): the
 * session redoes what it restores, and callers check again when it is back.
 * Not worth an `error` event.
 */
export function isConnectionTrouble(code: string | undefined): boolean {
  return code === ErrorCodes.ZK_CONNECTION_LOSS || code === ErrorCodes.ZK_SESSION_EXPIRED || code === ErrorCodes.CLOSED;
}

/** A delete of one's own ephemeral that failed this way leaves nothing: it is gone, changed hands, or went with its session. */
export function isGoneAnyway(code: string | undefined): boolean {
  return code === ErrorCodes.ZK_NO_NODE || code === ErrorCodes.ZK_BAD_VERSION || code === ErrorCodes.CLOSED || code === ErrorCodes.ZK_SESSION_EXPIRED;
}

/** ZooKeeper said no to who we are or to the ACL: trying again changes nothing. */
export function isRefusal(code: string | undefined): boolean {
  return code === ErrorCodes.ZK_NO_AUTH || code === ErrorCodes.ZK_AUTH_FAILED || code === ErrorCodes.ZK_INVALID_ACL;
}
