import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * flock(2) requests on a file as the kernel sees them (/proc/locks): the
 * holder, and the requests blocked behind it (lines with "->").
 */
export function flockState(file: string): { held: number; blocked: number } {
  const { held, blockedPids } = flockRequests(file);
  return { held, blocked: blockedPids.length };
}

/** The same, with the pids of the processes blocked behind the holder. */
export function flockRequests(file: string): { held: number; blockedPids: number[] } {
  const inode = fs.statSync(file).ino;
  let held = 0;
  const blockedPids: number[] = [];
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    const isBlocked = fields[1] === '->';
    const rest = isBlocked ? fields.slice(2) : fields.slice(1);
    // rest: FLOCK ADVISORY WRITE <pid> <maj:min:inode> <start> <end>
    if (rest[0] !== 'FLOCK') continue;
    if (Number(rest[4]?.split(':')[2]) !== inode) continue;
    if (isBlocked) blockedPids.push(Number(rest[3]));
    else held += 1;
  }
  return { held, blockedPids };
}

/**
 * Waits until the kernel shows `blocked` waiters on `file`. There is no event
 * for "a process entered flock(2)", so this re-reads /proc/locks; it is a
 * condition wait bounded by `timeoutMs`, not a fixed sleep.
 */
export async function waitForBlockedWaiters(file: string, blocked: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = flockState(file);
    if (state.blocked === blocked) return;
    if (Date.now() > deadline) {
      throw new Error(`expected ${blocked} blocked flock waiters on ${file}, kernel shows ${JSON.stringify(state)}`);
    }
    await sleep(2);
  }
}
