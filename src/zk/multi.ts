import zookeeper, { type Client } from 'node-zookeeper-client';
import { checkPath } from './paths.js';
import type { Transaction } from './transaction.js';

type Op =
  | { kind: 'create'; path: string; data: Buffer; mode: number }
  | { kind: 'set'; path: string; data: Buffer; version: number }
  | { kind: 'delete'; path: string; version: number }
  | { kind: 'check'; path: string; version: number };

/**
 * The `Transaction` of `session.transaction()`, over node-zookeeper-client's
 * multi. Not retried: it is not idempotent. A module of its own so that the
 * public declarations name no node-zookeeper-client type (its types are not
 * installed with bellwether).
 */
export class Multi implements Transaction {
  /** Sends the multi the way the session sends any write (after its credentials; errors mapped). */
  readonly #send: (build: (client: Client, done: (err: unknown) => void) => void) => Promise<void>;
  readonly #ops: Op[] = [];

  constructor(send: (build: (client: Client, done: (err: unknown) => void) => void) => Promise<void>) {
    this.#send = send;
  }

  create(path: string, data: Buffer | string = Buffer.alloc(0), mode: 'persistent' | 'ephemeral' = 'persistent'): this {
    const zkMode = mode === 'ephemeral' ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT;
    this.#ops.push({ kind: 'create', path: checkPath(path), data: Buffer.from(data), mode: zkMode });
    return this;
  }

  set(path: string, data: Buffer | string, version = -1): this {
    this.#ops.push({ kind: 'set', path: checkPath(path), data: Buffer.from(data), version });
    return this;
  }

  delete(path: string, version = -1): this {
    this.#ops.push({ kind: 'delete', path: checkPath(path), version });
    return this;
  }

  check(path: string, version: number): this {
    this.#ops.push({ kind: 'check', path: checkPath(path), version });
    return this;
  }

  commit(): Promise<void> {
    return this.#send((client, done) => {
      const tx = client.transaction();
      for (const op of this.#ops) {
        if (op.kind === 'create') tx.create(op.path, op.data, op.mode);
        else if (op.kind === 'set') tx.setData(op.path, op.data, op.version);
        else if (op.kind === 'delete') tx.remove(op.path, op.version);
        else tx.check(op.path, op.version);
      }
      tx.commit((err) => done(err));
    });
  }
}
