/** A task that records its start, then spins forever and ignores its signal: only terminating its thread ends it. */
import type { TaskContext } from 'bellwether';
import { record } from './task-work.js';

export default function job({ token }: TaskContext): void {
  record('start', token);
  for (;;) {}
}
