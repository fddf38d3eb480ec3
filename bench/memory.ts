import fs from 'node:fs';

/**
 * Resident and proportional memory of a process, from the kernel (MiB).
 * PSS splits each shared page among the processes mapping it: summed over
 * processes it counts a page once, where RSS counts it in each of them.
 */
export function memoryOf(pid: number): { rss: number; pss: number } {
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1]);
  return { rss: kib('Rss') / 1024, pss: kib('Pss') / 1024 };
}
