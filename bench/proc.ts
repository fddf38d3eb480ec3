import fs from 'node:fs';

/** Fields of /proc/<pid>/stat from the state on (comm may hold spaces: split after the last ')'), or undefined once it is gone. */
export function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
