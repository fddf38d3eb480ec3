import type { Logger } from '../log/logger.js';
import { checkKnownKeys, checkMillis, checkObject, invalidOption } from '../validate.js';
import { parseConnectString } from './connect-string.js';

export interface DigestAuth {
  scheme: 'digest';
  /** `user:password` */
  credentials: string;
}

export interface RetryPolicy {
  /** Retries of an idempotent operation (reads, sync, mkdirp) after a connection loss. Default 3. */
  attempts: number;
  /** First delay between retries in ms, doubling. Default 50. */
  initialDelay: number;
  /** Longest delay between retries in ms. Default 2000. */
  maxDelay: number;
}

export interface ZkSessionOptions {
  /** `host:port[,host:port...][/chroot]` */
  connect: string;
  /** Requested session timeout in ms (the server may negotiate another). Default 10000. */
  sessionTimeout?: number;
  /** How long `start()` waits for the first session, in ms. Default 15000. */
  connectTimeout?: number;
  /**
   * After the session expired: `'reopen'` (default) opens a new session and
   * restores everything declared through this object; `'exit'` runs the
   * `onExpire` callbacks, then exits the process with code 75
   * (`SESSION_EXPIRED_EXIT_CODE`) so that a supervisor restarts it.
   */
  onExpire?: 'reopen' | 'exit';
  /** Digest credentials, sent on every connection. */
  auth?: readonly DigestAuth[];
  retry?: Partial<RetryPolicy>;
  /** Logs the session's state changes (connected, suspended, reconnected, expired, closed). Default: none. Not part of `settings()`. */
  logger?: Logger;
}

/** What a forked worker needs to open its own session like this one (never the same session id). */
export interface ZkSessionSettings {
  connect: string;
  sessionTimeout: number;
  connectTimeout: number;
  onExpire: 'reopen' | 'exit';
  auth: DigestAuth[];
  retry: RetryPolicy;
}

const KNOWN = ['connect', 'sessionTimeout', 'connectTimeout', 'onExpire', 'auth', 'retry', 'logger'] as const;

/** Checks every option before any network I/O (the logger is the session's own: see ZkSession). */
export function resolveZkOptions(options: ZkSessionOptions): ZkSessionSettings {
  const given = checkObject(options, 'ZkSession options');
  checkKnownKeys(given, KNOWN, 'ZkSession');
  parseConnectString(given['connect']);
  const onExpire = given['onExpire'] ?? 'reopen';
  if (onExpire !== 'reopen' && onExpire !== 'exit') throw invalidOption('onExpire', "'reopen' or 'exit'", onExpire);
  const authGiven = given['auth'] ?? [];
  if (!Array.isArray(authGiven)) throw invalidOption('auth', 'an array of { scheme: "digest", credentials: "user:password" }', authGiven);
  const auth = authGiven.map((entry: unknown, index) => {
    const item = checkObject(entry, `auth[${index}]`);
    checkKnownKeys(item, ['scheme', 'credentials'], `auth[${index}]`);
    if (item['scheme'] !== 'digest') throw invalidOption(`auth[${index}].scheme`, "'digest'", item['scheme']);
    const credentials = item['credentials'];
    if (typeof credentials !== 'string' || !/^[^:]+:.+$/s.test(credentials)) {
      throw invalidOption(`auth[${index}].credentials`, "'user:password'", '(hidden)');
    }
    return { scheme: 'digest' as const, credentials };
  });
  const retryGiven = given['retry'] === undefined ? {} : checkObject(given['retry'], 'retry');
  checkKnownKeys(retryGiven, ['attempts', 'initialDelay', 'maxDelay'], 'ZkSession retry');
  const initialDelay = checkMillis(retryGiven['initialDelay'], 'retry.initialDelay', 50, 1);
  return {
    connect: given['connect'] as string,
    sessionTimeout: checkMillis(given['sessionTimeout'], 'sessionTimeout', 10_000, 1),
    connectTimeout: checkMillis(given['connectTimeout'], 'connectTimeout', 15_000, 1),
    onExpire,
    auth,
    retry: {
      attempts: checkMillis(retryGiven['attempts'], 'retry.attempts', 3, 0, 100, 'attempts'),
      initialDelay,
      maxDelay: checkMillis(retryGiven['maxDelay'], 'retry.maxDelay', Math.max(2000, initialDelay), initialDelay),
    },
  };
}
