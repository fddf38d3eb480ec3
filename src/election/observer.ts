import { EventEmitter } from 'eventemitter3';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { type Logger, NO_LOG, checkLogger } from '../log/logger.js';
import { checkPath } from '../zk/paths.js';
import type { ZkSession } from '../zk/session.js';
import type { NodeEvent, Subscription, NodeSnapshot } from '../zk/watch.js';
import { type ElectionPaths, electionPaths } from './ballots.js';

export interface ObserverEvents {
  /** A leader has acknowledged, with its ack data. */
  leader: (event: { leaderData: Buffer }) => void;
  /** The acknowledged leader is gone. */
  leaderGone: () => void;
  error: (error: BellwetherError) => void;
}

/**
 * Follows an election's leader_ack without taking part: `leader` when a
 * leader acknowledges, `leaderGone` when it goes, never twice for the same
 * state. Built on a persistent watch, so an ack deleted and created again
 * between two reads is seen as both.
 */
export class Observer extends EventEmitter<ObserverEvents> {
  readonly name: string;
  readonly paths: ElectionPaths;
  readonly #zk: ZkSession;
  #subscription: Subscription<NodeSnapshot> | undefined;
  #alive: boolean | undefined;
  #leaderData: Buffer | null = null;
  #closed = false;
  readonly #log: Logger;

  /** `logger`: logs `leader` and `leader-gone`, with `{ election: name }`. Default: none. */
  constructor(zk: ZkSession, name: string, options: { root?: string; logger?: Logger } = {}) {
    super();
    this.#zk = zk;
    this.name = name;
    this.paths = electionPaths(checkPath(options.root ?? '/_zkelection', 'election root'), name);
    this.#log = (checkLogger(options.logger) ?? NO_LOG).child({ election: name });
  }

  /** Data of the acknowledged leader as last seen, or `null`. */
  get leaderData(): Buffer | null {
    return this.#leaderData;
  }

  /** Starts observing; resolves with the current state (also reported as a first `leader` event when there is one). */
  async observe(): Promise<void> {
    if (this.#closed) throw new BellwetherError(ErrorCodes.CLOSED, `observer of ${this.name} was closed`);
    if (this.#subscription) return;
    this.#subscription = this.#zk.watch(this.paths.ack, (event) => this.#onEvent(event));
    const initial = await this.#subscription.ready;
    if (initial) this.#set(true, initial.data);
    else this.#set(false, null);
  }

  #onEvent(event: NodeEvent): void {
    if (event.type === 'deleted') this.#set(false, null);
    else if (event.type === 'created') this.#set(true, event.data);
  }

  #set(alive: boolean, data: Buffer | null): void {
    const first = this.#alive === undefined;
    if (this.#alive === alive) return;
    this.#alive = alive;
    this.#leaderData = data;
    if (alive) {
      this.#log.info({ event: 'leader' }, `${this.name}: a leader has acknowledged`);
      this.emit('leader', { leaderData: data! });
    } else if (!first) {
      this.#log.warn({ event: 'leader-gone' }, `${this.name}: the leader is gone`);
      this.emit('leaderGone');
    }
  }

  close(): void {
    this.#closed = true;
    this.#subscription?.close();
  }
}
