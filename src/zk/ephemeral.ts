import { type BellwetherError, ErrorCodes } from '../errors.js';
import { parentOf } from './paths.js';
import type { Stat } from './stat.js';
import { isConnectionTrouble, isGoneAnyway } from './zk-errors.js';

export interface EphemeralHandle {
  readonly path: string;
  /** Deletes the node now and stops re-creating it. */
  close(): Promise<void>;
}

interface Hooks {
  sessionId: () => string | undefined;
  report: (err: BellwetherError) => void;
  forget: (e: Ephemeral) => void;
}

/** The few session operations an ephemeral node needs. */
interface Operations {
  create(path: string, data: Buffer, options: { mode: 'ephemeral' }): Promise<string>;
  exists(path: string): Promise<Stat | null>;
  existsWatch(path: string, callback: () => unknown): Promise<Stat | null>;
  delete(path: string, version?: number): Promise<void>;
  mkdirp(path: string): Promise<void>;
}

/** An ephemeral node declared through the session: re-created in every new session. */
export class Ephemeral implements EphemeralHandle {
  readonly path: string;
  readonly #data: Buffer;
  readonly #ops: Operations;
  readonly #hooks: Hooks;
  #closed = false;

  constructor(ops: Operations, path: string, data: Buffer, hooks: Hooks) {
    this.#ops = ops;
    this.path = path;
    this.#data = data;
    this.#hooks = hooks;
  }

  /** Makes sure the node exists and belongs to the current session; never throws (errors are reported). */
  async ensure(): Promise<void> {
    if (this.#closed) return;
    try {
      try {
        await this.#ops.create(this.path, this.#data, { mode: 'ephemeral' });
      } catch (err) {
        // Parents are created only when missing: one round trip in the usual case.
        if ((err as BellwetherError).code !== ErrorCodes.ZK_NO_NODE) throw err;
        await this.#ops.mkdirp(parentOf(this.path));
        await this.#ops.create(this.path, this.#data, { mode: 'ephemeral' });
      }
    } catch (err) {
      if ((err as BellwetherError).code !== ErrorCodes.ZK_NODE_EXISTS) return this.#report(err as BellwetherError);
      // Ours already (a create whose answer was lost), or another session's: often our own
      // previous one (a worker restarted before its old session expired). Then it is made
      // again as soon as that node goes.
      const session = this.#hooks.sessionId();
      let stat: Stat | null;
      try {
        stat = await this.#ops.existsWatch(this.path, () => void (this.#hooks.sessionId() === session ? this.ensure() : undefined));
      } catch (checkErr) {
        return this.#report(checkErr as BellwetherError);
      }
      if (!stat) return this.ensure(); // gone meanwhile
    }
  }

  /** Connection trouble is not reported: the session ensures the node again when it is back. */
  #report(error: BellwetherError): void {
    if (!isConnectionTrouble(error.code)) this.#hooks.report(error);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#hooks.forget(this);
    try {
      const stat = await this.#ops.exists(this.path);
      if (stat && stat.ephemeralOwner === this.#hooks.sessionId()) await this.#ops.delete(this.path, stat.version);
    } catch (err) {
      if (!isGoneAnyway((err as BellwetherError).code)) throw err;
    }
  }
}
