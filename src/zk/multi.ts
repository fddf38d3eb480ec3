import zookeeper, { type Client } from 'node-zookeeper-client';
import type { BellwetherError } from '../errors.js';
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
  readonly #client: Client;
  readonly #mapError: (err: unknown) => BellwetherError;
  readonly #ops: Op[] = [];

  constructor(client: Client, mapError: (err: unknown) => BellwetherError) {
    this.#client = client;
    this.#mapError = mapError;
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
    const tx = this.#client.transaction();
    for (const op of this.#ops) {
      if (op.kind === 'create') tx.create(op.path, op.data, op.mode);
      else if (op.kind === 'set') tx.setData(op.path, op.data, op.version);
      else if (op.kind === 'delete') tx.remove(op.path, op.version);
      else tx.check(op.path, op.version);
    }
    return new Promise((resolve, reject) => tx.commit((err) => (err ? reject(this.#mapError(err)) : resolve())));
  }
}
