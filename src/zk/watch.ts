import type { Stat } from './stat.js';

export interface NodeSnapshot {
  data: Buffer;
  stat: Stat;
}

export type NodeEvent =
  | { type: 'created'; path: string; data: Buffer; stat: Stat }
  | { type: 'changed'; path: string; data: Buffer; stat: Stat }
  | { type: 'deleted'; path: string };

export interface ChildrenSnapshot {
  children: string[];
  stat: Stat;
}

export type ChildrenEvent =
  | { type: 'created'; path: string; children: string[]; stat: Stat }
  | { type: 'children'; path: string; children: string[]; stat: Stat }
  | { type: 'deleted'; path: string };

export interface Subscription<Snapshot> {
  readonly path: string;
  /** The state the subscription started from (`null`: the node did not exist). Events are changes after it. */
  readonly ready: Promise<Snapshot | null>;
  close(): void;
}

/**
 * What changed between two reads of a node. A different czxid means the node
 * was deleted and created again between the reads (the race of seed 003):
 * both events are delivered, not lost.
 */
export function diffNode(path: string, before: NodeSnapshot | null, after: NodeSnapshot | null): NodeEvent[] {
  if (!before && !after) return [];
  if (!after) return [{ type: 'deleted', path }];
  const created: NodeEvent = { type: 'created', path, data: after.data, stat: after.stat };
  if (!before) return [created];
  if (before.stat.czxid !== after.stat.czxid) return [{ type: 'deleted', path }, created];
  if (before.stat.mzxid !== after.stat.mzxid) return [{ type: 'changed', path, data: after.data, stat: after.stat }];
  return [];
}

export function diffChildren(path: string, before: ChildrenSnapshot | null, after: ChildrenSnapshot | null): ChildrenEvent[] {
  if (!before && !after) return [];
  if (!after) return [{ type: 'deleted', path }];
  const created: ChildrenEvent = { type: 'created', path, children: after.children, stat: after.stat };
  if (!before) return [created];
  if (before.stat.czxid !== after.stat.czxid) return [{ type: 'deleted', path }, created];
  // pzxid moves with every child created or deleted, even one deleted and re-created under the same name.
  if (before.stat.pzxid !== after.stat.pzxid) return [{ type: 'children', path, children: after.children, stat: after.stat }];
  return [];
}

/**
 * A watch that stays armed: after every notification, reconnect and new
 * session it reads the node again (setting the next one-shot watch in the
 * same call) and delivers the difference from the last state it saw.
 */
export class PersistentWatch<Snapshot, Event> {
  readonly path: string;
  readonly ready: Promise<Snapshot | null>;
  readonly #read: (path: string, watcher: () => void) => Promise<Snapshot | null>;
  readonly #diff: (path: string, before: Snapshot | null, after: Snapshot | null) => Event[];
  readonly #deliver: (event: Event) => void;
  readonly #onError: (error: unknown) => void;
  readonly #onClose: () => void;
  /** One function for the life of the watch: the client dedups watchers by identity. */
  readonly #watcher = (): void => void this.rearm();
  #last: Snapshot | null = null;
  #started = false;
  #closed = false;
  #running: Promise<void> | undefined;
  #again = false;
  #resolveReady!: (snapshot: Snapshot | null) => void;

  constructor(options: {
    path: string;
    read: (path: string, watcher: () => void) => Promise<Snapshot | null>;
    diff: (path: string, before: Snapshot | null, after: Snapshot | null) => Event[];
    deliver: (event: Event) => void;
    onError: (error: unknown) => void;
    onClose: () => void;
  }) {
    this.path = options.path;
    this.#read = options.read;
    this.#diff = options.diff;
    this.#deliver = options.deliver;
    this.#onError = options.onError;
    this.#onClose = options.onClose;
    this.ready = new Promise((resolve) => {
      this.#resolveReady = resolve;
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reads now (again, if a read is running) and delivers what changed.
   * Resolves when no read is left running.
   */
  rearm(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      let snapshot: Snapshot | null;
      try {
        snapshot = await this.#read(this.path, this.#watcher);
      } catch (err) {
        // Lost connection: the session re-arms every watch when it is back.
        if (!this.#closed) this.#onError(err);
        return;
      }
      if (this.#closed) return;
      if (!this.#started) {
        this.#started = true;
        this.#last = snapshot;
        this.#resolveReady(snapshot);
        continue;
      }
      const events = this.#diff(this.path, this.#last, snapshot);
      this.#last = snapshot;
      for (const event of events) this.#deliver(event);
    } while (this.#again && !this.#closed);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#started) this.#resolveReady(null);
    this.#onClose();
  }
}
