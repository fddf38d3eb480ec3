import fs from 'node:fs';

/** The live children of `pid`, from /proc (the children of each of its threads). */
export function childrenOf(pid: number): number[] {
  const pids: number[] = [];
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      pids.push(...fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread ended
    }
  }
  return pids;
}

/** A process's parent, by its /proc entry. */
export function parentOf(pid: number): number {
  return Number(/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

/** Gone: no such process, or a zombie (reparented to PID 1, which reaps when it gets to it). */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw err;
  }
  try {
    return /^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Resolves with the pids still there once all are gone or `ms` passed. A
 * process's end has no event a non-parent can await, so this re-checks every
 * 10 ms: a condition wait bounded by `ms`, not a fixed sleep.
 */
export async function gone(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids.filter((pid) => !isGone(pid));
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    left = left.filter((pid) => !isGone(pid));
  }
  return left;
}

/**
 * SIGKILLs these pids when the test ends, whatever its outcome: for
 * processes a test only knows by pid (workers of a primary it killed), so
 * that a failure of the fencing under test does not leave them running.
 */
export function killAtEnd(t: { after(fn: () => unknown): void }, pids: number[]): void {
  t.after(() => {
    for (const pid of pids) {
      try {
        if (!isGone(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  });
}
