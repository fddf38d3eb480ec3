import fs from 'node:fs';
import path from 'node:path';
import { BellwetherError, ErrorCodes } from '../errors.js';
import type { Lease, LeaseSource } from '../singleton/lease.js';
import { type FlockWaiter, rehearseWait, waitForExclusiveLock, waitMethod } from './flock-wait.js';
import { checkDirectory, prepareLockDir } from './lock-dir.js';
import { advanceFencingToken, isLockedPath, openLockFile, rehearseTakeover, republishLockFile } from './lock-file.js';

/**
 * How often a holder checks that its lock file is still the one at its
 * path, besides the file watch (which a filesystem may not support).
 */
const FILE_CHECK_MS = 1000;

/** Exclusive flock(2) on `<lockDir>/<name>.lock`, with a fencing token stored in the file. */
export class HostLock implements LeaseSource {
  readonly #name: string;
  readonly #dir: string;
  readonly #isDefaultDir: boolean;
  /** The lock directory's real path, resolved once by prepare(): a symlink swapped later changes nothing. */
  #realDir: string | undefined;
  #file: string | undefined;
  /**
   * The highest token this process has held: its count never goes back,
   * whatever happens to the file. 0 until a first term (tokens start at 1):
   * after one, the next wait queues behind the others (see waitForExclusiveLock).
   */
  #seen = 0;

  constructor(name: string, lockDir: string, isDefaultDir: boolean) {
    this.#dir = lockDir;
    this.#isDefaultDir = isDefaultDir;
    this.#name = name;
  }

  /** The lock file's path, once `prepare()` has checked the directory. */
  get file(): string | undefined {
    return this.#file;
  }

  prepare(): void {
    waitMethod();
    this.#realDir = prepareLockDir(this.#dir, this.#isDefaultDir);
    this.#file = path.join(this.#realDir, `${this.#name}.lock`);
    // Opening once checks the file itself (symlink, owner, type, mode) up front.
    const fd = openLockFile(this.#file);
    try {
      rehearseTakeover(fd, this.#file);
    } finally {
      fs.closeSync(fd);
    }
    rehearseWait();
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    if (this.#realDir === undefined) this.prepare();
    const realDir = this.#realDir as string;
    const file = this.#file as string;
    for (;;) {
      // Checked again every time: the default directory may have been removed
      // (by a cleaner) and is then made again; any may have been tampered with.
      if (this.#isDefaultDir) prepareLockDir(realDir, true);
      else checkDirectory(realDir, this.#dir);
      const fd = openLockFile(file);
      let waiter: FlockWaiter;
      try {
        waiter = await waitForExclusiveLock(fd, signal, this.#seen === 0);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      // The file may have been deleted or replaced while we waited: a lock on
      // a file no longer at the path excludes nobody. Queue again on the new one.
      if (signal.aborted || !isLockedPath(fd, file)) {
        await waiter.gone();
        fs.closeSync(fd);
        if (signal.aborted) throw signal.reason;
        continue;
      }
      try {
        const token = advanceFencingToken(fd, file, this.#seen);
        this.#seen = token;
        return this.#lease(fd, file, waiter, token);
      } catch (err) {
        await waiter.gone();
        fs.closeSync(fd);
        throw err;
      }
    }
  }

  /**
   * A held lock is lost if its file leaves the path (deleted by hand, by a
   * tmp cleaner) or is replaced: another process may then lock the new
   * file. The holder watches for that and stops. A deleted file is first put
   * back, locked, with this term's token: the count goes on, and a newcomer
   * waits until this holder has let go.
   */
  #lease(fd: number, file: string, waiter: FlockWaiter, token: number): Lease {
    const lost = new AbortController();
    /** The put-back file's descriptor, holding its lock until release. */
    let putBack: number | undefined;
    const check = (): void => {
      if (lost.signal.aborted || isLockedPath(fd, file)) return;
      try {
        if (!fs.existsSync(file)) putBack = republishLockFile(file, token);
      } catch {
        // not put back: the holder stops all the same
      }
      stopWatching();
      lost.abort(
        new BellwetherError(
          ErrorCodes.LOCK_LOST,
          `lock file ${file} was ${putBack !== undefined ? `deleted (put back, locked, with token ${token})` : 'deleted or replaced'} while held: this process stops running ${this.#name}`,
        ),
      );
    };
    let watcher: fs.FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    // The watch and the periodic check begin once the job has been started,
    // in the next turn of the event loop: a process's first file watch is
    // slow to set up (measured in a takeover on Bun: from the token to the
    // term 1.4-2.0 ms with the watch, 0.7-1.0 without; a first interval took
    // 0.1-0.2 ms on Node), and the path was checked just before this lease.
    // Checked again then: nothing done to the file in between goes unseen.
    const watchSoon = setImmediate(() => {
      try {
        watcher = fs.watch(file, { persistent: false }, check);
        watcher.on('error', () => {});
      } catch {
        // no file watch here: the periodic check still applies
      }
      timer = setInterval(check, FILE_CHECK_MS);
      timer.unref();
      check();
    });
    const stopWatching = (): void => {
      clearImmediate(watchSoon);
      clearInterval(timer);
      watcher?.close();
    };
    let released = false;
    return {
      token,
      fence: BigInt(token),
      lost: lost.signal,
      release: async () => {
        if (released) return;
        released = true;
        stopWatching();
        // Once the flock(1) child is gone, our descriptor is the last
        // reference to the locked open file description: closing it unlocks.
        await waiter.gone();
        fs.closeSync(fd);
        // Last: a newcomer waits on the put-back file until the job has stopped.
        if (putBack !== undefined) fs.closeSync(putBack);
      },
    };
  }
}
