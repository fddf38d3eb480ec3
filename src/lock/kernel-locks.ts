import { type Stats, readFileSync } from 'node:fs';

/**
 * The kernel's view (/proc/locks) of flock(2) locks on one file, found by
 * device and inode: the holder, and the requests blocked behind it (lines
 * with "->"). Nothing is locked to find out.
 */
export function flockState(stat: Stats): { held: boolean; waiting: number } {
  const wanted = `${hex2(major(stat.dev))}:${hex2(minor(stat.dev))}:${stat.ino}`;
  let held = false;
  let waiting = 0;
  for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    const blocked = fields[1] === '->';
    const rest = blocked ? fields.slice(2) : fields.slice(1);
    // rest: FLOCK ADVISORY WRITE <pid> <maj:min:inode> <start> <end>
    if (rest[0] !== 'FLOCK' || rest[4] !== wanted) continue;
    if (blocked) waiting += 1;
    else held = true;
  }
  return { held, waiting };
}

/** Linux's encoding of dev_t (as glibc's major()/minor()). */
function major(dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn));
}

function minor(dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
