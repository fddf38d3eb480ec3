import fs from 'node:fs';
import type { Worker } from 'node:cluster';

export type SlotState = 'starting' | 'ready' | 'stopping' | 'exited' | 'given-up';

/** What hooks and status() see of a slot. */
export interface SlotInfo {
  /** Stable index 0..N-1, kept by every replacement. */
  index: number;
  pid: number | undefined;
  state: SlotState;
  /** 0 healthy, > 0 the highest unhealthy code reported, -1 silent (no heartbeat within `timeout`). */
  code: number;
  /** How many times a worker of this slot was replaced. */
  restarts: number;
  /** Milliseconds since the current worker was forked. */
  uptime: number;
  /** Resident memory of the current worker, bytes (Linux /proc), when known. */
  rss: number | undefined;
}

/** One worker position: its current worker and its restart history. */
export class Slot {
  readonly index: number;
  worker: Worker | undefined;
  state: SlotState = 'exited';
  code = 0;
  restarts = 0;
  forkedAt = 0;
  lastHeartbeat = 0;
  /** Exit times within the crash-loop window. */
  exits: number[] = [];
  /** Set while the slot is being killed (so it is killed once). */
  killing: NodeJS.Timeout | undefined;
  /** The slot is going away (scale down, or the supervisor stops): do not replace its worker. */
  retired = false;
  restartTimer: NodeJS.Timeout | undefined;

  constructor(index: number) {
    this.index = index;
  }

  info(): SlotInfo {
    const pid = this.worker?.process.pid;
    return {
      index: this.index,
      pid,
      state: this.state,
      code: this.code,
      restarts: this.restarts,
      uptime: this.worker ? Math.round(performance.now() - this.forkedAt) : 0,
      rss: pid === undefined ? undefined : residentBytes(pid),
    };
  }
}

function residentBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
