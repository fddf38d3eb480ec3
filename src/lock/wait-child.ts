/**
 * The built-in lock waiter, for hosts without util-linux's flock(1)
 * (distroless and Alpine images): a process of the app's own runtime that
 * waits in flock(2) on descriptor 3, prints "locked" once it has the lock,
 * and exits. Descriptor 3 shares the app's open file description, so the
 * lock is then the app's (see flock-wait.ts).
 *
 * It must never outlive the app, or it would stay queued on the lock and
 * take it from a successor: on Bun the kernel kills it when its parent dies
 * (prctl PR_SET_PDEATHSIG, as setpriv --pdeathsig does for flock(1)); on
 * Node, which cannot call prctl, it kills itself when its stdin, a pipe
 * from the app, reaches its end.
 *
 * argv: the app's pid.
 */
import fs from 'node:fs';
import { libc, nativeFlock, nativeFlockError } from './flock-native.js';

const LOCK_FD = 3;
const PR_SET_PDEATHSIG = 1;
const SIGKILL = 9;

const die = (): void => void process.kill(process.pid, 'SIGKILL');

if (process.versions['bun']) {
  const { prctl, getppid } = libc<{ prctl: (option: number, arg: number) => number; getppid: () => number }>({
    prctl: { args: ['i32', 'u64'], returns: 'i32' },
    getppid: { args: [], returns: 'i32' },
  });
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The app may have died before prctl took effect: then nobody would kill us.
  if (getppid() !== Number(process.argv[2])) die();
} else {
  process.stdin.on('end', die).on('error', die).resume();
}

const flock = nativeFlock();
if (!flock) {
  fs.writeSync(2, `${nativeFlockError()}\n`);
  process.exit(2);
}
flock.lock(LOCK_FD).then(
  () => {
    fs.writeSync(1, 'locked\n');
    process.exit(0);
  },
  (err: Error) => {
    fs.writeSync(2, `flock(2) failed: ${err.message}\n`);
    process.exit(1);
  },
);
