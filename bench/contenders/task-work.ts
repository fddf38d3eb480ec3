/**
 * What the tasks bench's jobs share, inline (`run`, main thread) or as a
 * task (a worker thread): the same CPU-bound loop, and start/end records
 * appended to one file by every contender.
 */
import fs from 'node:fs';
import { threadId } from 'node:worker_threads';

/** The job's length: JOB_MS, else 5000 ms. */
export const JOB_MS = Number(process.env['JOB_MS'] ?? 5000);

/**
 * Integer arithmetic for `ms`, in slices of 1 ms; `stop()` is asked only
 * between slices. Returns the result so that nothing is optimised away.
 */
export function burn(ms: number, stop: () => boolean): number {
  const end = performance.now() + ms;
  let x = 0x2545f491;
  for (let now = performance.now(); now < end && !stop(); now = performance.now()) {
    const sliceEnd = Math.min(end, now + 1);
    do {
      for (let i = 0; i < 4096; i++) x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) | 0;
    } while (performance.now() < sliceEnd);
  }
  return x;
}

export interface JobRecord {
  kind: 'start' | 'end';
  token: number;
  pid: number;
  /** 0: the main thread (run); else the worker thread of a task. */
  thread: number;
  /** The writing thread's OS thread id: /proc/<pid>/task/<tid> exists while it lives. */
  tid: number;
  /** Date.now() when it was written. */
  at: number;
}

/** Appends one record to RECORDS, a file opened with O_APPEND: lines of every writer stay whole and in write order. */
export function record(kind: JobRecord['kind'], token: number): void {
  const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
  const line: JobRecord = { kind, token, pid: process.pid, thread: threadId, tid, at: Date.now() };
  const fd = fs.openSync(process.env['RECORDS']!, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND);
  try {
    fs.writeSync(fd, `${JSON.stringify(line)}\n`);
  } finally {
    fs.closeSync(fd);
  }
}

/** The job as `run` on the main thread. */
export function runInline({ signal, token }: { signal: AbortSignal; token: number }): void {
  record('start', token);
  burn(JOB_MS, () => signal.aborted);
  record('end', token);
}
