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

/**
 * One forked worker process and what the primary knows of it. Every timer
 * and flag of a worker lives here, not on its slot: a slot outlives its
 * workers, and a replacement must not inherit its predecessor's kill timer.
 */
export class WorkerHandle {
  readonly worker: Worker;
  readonly slot: Slot;
  state: 'starting' | 'ready' | 'stopping' = 'starting';
  code = 0;
  /** The worker said that listening does not make it ready: only its 'ready' message does. */
  readyDeferred = false;
  /** Singleton leases the worker holds, as it last reported. */
  leads = 0;
  readonly forkedAt = performance.now();
  lastHeartbeat = this.forkedAt;
  /** It has sent a message, so its listener for ours is in place (a message sent earlier is lost). */
  heard = false;
  /** A graceful stop was asked before the worker could hear it: sent once it speaks. */
  stopPending = false;
  /** Being killed for liveness (SIGTERM sent): killed once. */
  killing = false;
  /** SIGKILL after killTimeout or shutdownTimeout. */
  killTimer: NodeJS.Timeout | undefined;
  /** When killTimer fires (performance.now()): a stop request tells the worker how long it has. */
  killAt = Infinity;
  /** Resolves when the worker answers 'stopping' (its singletons contend no more). */
  readonly stoppingAcked: Promise<void>;
  #settleStoppingAcked!: () => void;
  /** True once ready; false if it exited first. */
  readonly ready: Promise<boolean>;
  readonly exited: Promise<void>;
  #settleReady!: (ready: boolean) => void;
  #settleExited!: () => void;

  constructor(worker: Worker, slot: Slot) {
    this.worker = worker;
    this.slot = slot;
    this.ready = new Promise((resolve) => (this.#settleReady = resolve));
    this.exited = new Promise((resolve) => (this.#settleExited = resolve));
    this.stoppingAcked = new Promise((resolve) => (this.#settleStoppingAcked = resolve));
  }

  /** SIGKILL in `ms` unless it exits first; a timer already set (a shorter liveness kill) stays. */
  killIn(ms: number): void {
    if (this.killTimer) return;
    this.killAt = performance.now() + ms;
    this.killTimer = setTimeout(() => this.worker.process.kill('SIGKILL'), ms);
  }

  markStoppingAcked(): void {
    this.#settleStoppingAcked();
  }

  /** Marks it ready; false if it was not starting (already ready, stopping or gone). */
  markReady(): boolean {
    if (this.state !== 'starting') return false;
    this.state = 'ready';
    this.#settleReady(true);
    return true;
  }

  markExited(): void {
    clearTimeout(this.killTimer);
    this.#settleReady(false);
    this.#settleExited();
  }

  get pid(): number | undefined {
    return this.worker.process.pid;
  }
}

/** One worker position: its current worker, a replacement during a rolling restart, and its restart history. */
export class Slot {
  readonly index: number;
  /** The worker serving for this slot. */
  current: WorkerHandle | undefined;
  /** During a rolling restart: the new worker, until it is ready and takes over. */
  replacement: WorkerHandle | undefined;
  /** The state while there is no current worker. */
  idle: 'exited' | 'given-up' = 'exited';
  /** The last worker's status code, shown while there is no current worker. */
  lastCode = 0;
  restarts = 0;
  /** Exit times within the crash-loop window. */
  exits: number[] = [];
  /** The slot is going away (scale down, or the supervisor stops): do not replace its worker. */
  retired = false;
  restartTimer: NodeJS.Timeout | undefined;
  #readyWaiters: ((ready: boolean) => void)[] = [];

  constructor(index: number) {
    this.index = index;
  }

  /** Resolves true once a current worker of the slot is ready (through restarts), false once the slot is given up or retired. */
  whenReady(): Promise<boolean> {
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  settleReady(ready: boolean): void {
    for (const resolve of this.#readyWaiters.splice(0)) resolve(ready);
  }

  get state(): SlotState {
    return this.current?.state ?? this.idle;
  }

  /** The slot as seen through one of its workers (by default the current one). */
  info(handle: WorkerHandle | undefined = this.current): SlotInfo {
    const pid = handle?.pid;
    return {
      index: this.index,
      pid,
      state: handle?.state ?? this.idle,
      code: handle?.code ?? this.lastCode,
      restarts: this.restarts,
      uptime: handle ? Math.round(performance.now() - handle.forkedAt) : 0,
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
