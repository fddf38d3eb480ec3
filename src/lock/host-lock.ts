import fs from 'node:fs';
import path from 'node:path';
import type { Lease, LeaseSource } from '../singleton/lease.js';
import { flockPrograms, waitForExclusiveLock } from './flock-wait.js';
import { prepareLockDir } from './lock-dir.js';
import { advanceFencingToken, openLockFile } from './lock-file.js';

/** A host lock can only be given up, never taken away: its `lost` signal never fires. */
const NEVER_LOST = new AbortController().signal;

/** Exclusive flock(2) on `<lockDir>/<name>.lock`, with a fencing token stored in the file. */
export class HostLock implements LeaseSource {
  readonly #name: string;
  readonly #dir: string;
  readonly #createDir: boolean;
  #file: string | undefined;

  constructor(name: string, lockDir: string, createDir: boolean) {
    this.#dir = lockDir;
    this.#createDir = createDir;
    this.#name = name;
  }

  /** The lock file's path, once `prepare()` has checked the directory. */
  get file(): string | undefined {
    return this.#file;
  }

  prepare(): void {
    flockPrograms();
    const dir = prepareLockDir(this.#dir, this.#createDir);
    const file = path.join(dir, `${this.#name}.lock`);
    // Opening once checks the file itself (symlink, owner, type) up front.
    fs.closeSync(openLockFile(file));
    this.#file = file;
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    if (this.#file === undefined) this.prepare();
    const file = this.#file as string;
    const fd = openLockFile(file);
    try {
      const waiter = await waitForExclusiveLock(fd, signal);
      // Acquired after close() asked us to stop: let go at once.
      if (signal.aborted) {
        await waiter.gone();
        throw signal.reason;
      }
      const token = advanceFencingToken(fd, file);
      let released = false;
      return {
        token,
        lost: NEVER_LOST,
        release: async () => {
          if (released) return;
          released = true;
          // Once the flock(1) child is gone, our descriptor is the last
          // reference to the locked open file description: closing it unlocks.
          await waiter.gone();
          fs.closeSync(fd);
        },
      };
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }
}
