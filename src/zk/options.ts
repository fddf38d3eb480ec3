import type { Logger } from '../log/logger.js';
import { checkKnownKeys, checkMillis, checkObject, invalidOption, invalidSecretOption } from '../validate.js';
import { parseConnectString } from './connect-string.js';

export interface DigestAuth {
  scheme: 'digest';
  /** `user:password` */
  credentials: string;
}

/**
 * Stands in a worker's settings (`worker.zkSettings()`) for the primary's
 * credentials, which never travel in the environment: the session asks the
 * primary for them over the IPC channel as it starts.
 */
export interface PrimaryAuth {
  scheme: 'from-primary';
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
  /** Digest credentials, sent on every connection (in a worker, `{ scheme: 'from-primary' }` stands for the primary's). */
  auth?: readonly (DigestAuth | PrimaryAuth)[];
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
  auth: (DigestAuth | PrimaryAuth)[];
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
  const expected = 'an array of { scheme: "digest", credentials: "user:password" }';
  // Neither what was given nor a part of it is ever shown: it may be the secret itself ('user:password', ['user:password']).
  if (!Array.isArray(authGiven)) throw invalidSecretOption('auth', expected, authGiven);
  const auth = authGiven.map((entry: unknown, index): DigestAuth | PrimaryAuth => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw invalidSecretOption(`auth[${index}]`, 'an object', entry);
    const item = entry as Record<string, unknown>;
    if (item['scheme'] === 'from-primary') {
      checkKnownKeys(item, ['scheme'], `auth[${index}]`);
      return { scheme: 'from-primary' };
    }
    checkKnownKeys(item, ['scheme', 'credentials'], `auth[${index}]`);
    if (item['scheme'] !== 'digest') throw invalidSecretOption(`auth[${index}].scheme`, "'digest'", item['scheme']);
    const credentials = item['credentials'];
    if (typeof credentials !== 'string' || !/^[^:]+:.+$/s.test(credentials)) {
      throw invalidSecretOption(`auth[${index}].credentials`, "'user:password'", credentials);
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

