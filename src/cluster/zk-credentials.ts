/**
 * How the primary's ZooKeeper credentials reach its workers: over the IPC
 * channel, never in the environment. A process's initial environment stays
 * readable in /proc/<pid>/environ (by the same user and root, and in core
 * dumps) whatever is deleted from process.env later, and a worker's code may
 * spawn children before bellwether is imported. So the environment carries
 * the settings with `{ scheme: 'from-primary' }` in place of the credentials,
 * and the worker's session asks the primary for them as it starts.
 */
import type { Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { sendToPrimary } from '../worker/send-to-primary.js';
import type { DigestAuth } from '../zk/options.js';
import type { ZkSession } from '../zk/session.js';
import { ENV, type ZkAuthMessage, isZkAuthMessage } from './protocol.js';

/** A worker's environment entry for the primary's session `zk`: its settings, the credentials left out. */
export function zkSettingsEnv(zk: ZkSession): Record<string, string> {
  const settings = zk.settings();
  const auth = settings.auth.length > 0 ? [{ scheme: 'from-primary' as const }] : [];
  return { [ENV.zkSettings]: JSON.stringify({ ...settings, auth }) };
}

/** Answers `worker`'s requests for the credentials of `zk`: on that worker's own channel, to it alone. */
export function answerZkAuth(worker: Worker, zk: ZkSession): void {
  worker.on('message', (message: unknown) => {
    if (!isZkAuthMessage(message) || message.bellwether !== 'zk-auth-request' || !worker.isConnected()) return;
    const auth = zk.settings().auth.filter(isDigest);
    const answer: ZkAuthMessage = { bellwether: 'zk-auth', id: message.id, auth };
    try {
      worker.send(answer, undefined, () => {});
    } catch {
      // The channel closed in between: the worker is gone.
    }
  });
}

/** Requests for the credentials under way in this worker, by id: one message listener for all of them. */
const asking = new Map<string, (auth: DigestAuth[]) => void>();

function onAuthAnswer(message: unknown): void {
  if (!isZkAuthMessage(message) || message.bellwether !== 'zk-auth') return;
  asking.get(message.id)?.(Array.isArray(message.auth) ? message.auth.filter(isDigest) : []);
}

/**
 * In a worker: the primary's credentials, asked over the IPC channel.
 * Rejects with BW_ERR_ZK_CONNECT_TIMEOUT when no answer comes within
 * `withinMs`, and with BW_ERR_CLOSED once `signal` aborts.
 */
export function askPrimaryForAuth(withinMs: number, signal: AbortSignal): Promise<DigestAuth[]> {
  return new Promise((resolve, reject) => {
    const id = randomUUID();
    const settle = (outcome: () => void): void => {
      clearTimeout(timer);
      asking.delete(id);
      if (asking.size === 0) process.off('message', onAuthAnswer);
      signal.removeEventListener('abort', onAbort);
      outcome();
    };
    const onAbort = (): void => settle(() => reject(new BellwetherError(ErrorCodes.CLOSED, 'ZkSession was closed while starting')));
    const timer = setTimeout(
      () =>
        settle(() =>
          reject(
            new BellwetherError(
              ErrorCodes.ZK_CONNECT_TIMEOUT,
              `no ZooKeeper credentials from the primary within ${withinMs} ms: auth { scheme: 'from-primary' } is answered only in a worker of a Supervisor or of installForkHook given zk`,
            ),
          ),
        ),
      withinMs,
    );
    if (asking.size === 0) process.on('message', onAuthAnswer);
    asking.set(id, (auth) => settle(() => resolve(auth)));
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    // No channel (the primary is gone): the timeout says it, as for a primary that never answers.
    else sendToPrimary({ bellwether: 'zk-auth-request', id } satisfies ZkAuthMessage);
  });
}

function isDigest(entry: unknown): entry is DigestAuth {
  const { scheme, credentials } = (entry ?? {}) as Partial<DigestAuth>;
  return scheme === 'digest' && typeof credentials === 'string';
}
