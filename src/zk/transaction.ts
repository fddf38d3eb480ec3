/**
 * Writes that happen all together or not at all (ZooKeeper's multi), from
 * `session.transaction()`. Each method checks its path and adds a write;
 * nothing is sent before `commit()`.
 */
export interface Transaction {
  /** Creates `path` (`mode` `'persistent'` by default, or `'ephemeral'`); empty data by default. */
  create(path: string, data?: Buffer | string, mode?: 'persistent' | 'ephemeral'): this;
  /** Sets the data of `path`, if its version is `version` (`-1`, the default: any version). */
  set(path: string, data: Buffer | string, version?: number): this;
  /** Deletes `path`, if its version is `version` (`-1`, the default: any version). */
  delete(path: string, version?: number): this;
  /** Fails the transaction unless `path`'s version is `version`. */
  check(path: string, version: number): this;
  /** Sends the writes; rejects with a BellwetherError. Not retried: it is not idempotent. */
  commit(): Promise<void>;
}
