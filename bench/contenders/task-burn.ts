/** The tasks bench's job as a task: task-work's burn() in the worker thread, stopping once leadership ends. */
import type { TaskContext } from 'bellwether';
import { JOB_MS, burn, record } from './task-work.js';

export default function job({ token, signal, stillLeader }: TaskContext): void {
  record('start', token);
  burn(JOB_MS, () => signal.aborted || !stillLeader());
  record('end', token);
}
