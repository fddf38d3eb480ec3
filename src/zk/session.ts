import { setMaxListeners } from 'node:events';
import { EventEmitter } from 'eventemitter3';
import zookeeper, { type Client, type Stat as RawStat } from 'node-zookeeper-client';
import { askPrimaryForAuth } from '../cluster/zk-credentials.js';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { type Logger, NO_LOG, checkLogger, reportError } from '../log/logger.js';
import { delay, settledWithin } from '../singleton/abort.js';
import { type Acl, checkAclFor } from './acl.js';
import { toZkAcl } from './zk-acl.js';
import { Ephemeral, type EphemeralHandle } from './ephemeral.js';
import { EventQueue } from './event-queue.js';
import { Multi } from './multi.js';
import { type DigestAuth, type ZkSessionOptions, type ZkSessionSettings, resolveZkOptions } from './options.js';
import { checkPath, joinPath } from './paths.js';
import { toStat } from './raw-stat.js';
import type { Stat } from './stat.js';
import type { Transaction } from './transaction.js';
import { Transport, type TransportState } from './transport.js';
import {
  type ChildrenEvent,
  type ChildrenSnapshot,
  type NodeEvent,
  type NodeSnapshot,
  PersistentWatch,
  type Subscription,
  diffChildren,
  diffNode,
} from './watch.js';
import { fromZk, isConnectionTrouble, zkCodeOf, zkException } from './zk-errors.js';

/** Exit code of a process whose session expired under `onExpire: 'exit'`. */
export const SESSION_EXPIRED_EXIT_CODE = 75;

export type ZkSessionState = 'latent' | 'connecting' | 'connected' | 'suspended' | 'closed';

export type CreateMode = 'persistent' | 'ephemeral' | 'persistent-sequential' | 'ephemeral-sequential';

const MODES: Record<CreateMode, number> = {
  persistent: zookeeper.CreateMode.PERSISTENT,
  ephemeral: zookeeper.CreateMode.EPHEMERAL,
  'persistent-sequential': zookeeper.CreateMode.PERSISTENT_SEQUENTIAL,
  'ephemeral-sequential': zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
};

/** What fired a one-shot watch of `existsWatch()`. */
export type NodeChange = 'created' | 'deleted' | 'changed';

/** node-zookeeper-client's Event types (NODE_CREATED 1, NODE_DELETED 2, NODE_DATA_CHANGED 3). */
const NODE_CHANGES: Record<number, NodeChange> = { 1: 'created', 2: 'deleted', 3: 'changed' };


export interface ZkSessionEvents {
  /** A new session: the first one, or the one that replaced an expired one (restored by then). */
  connected: (event: { sessionId: string; timeout: number }) => void;
  /** The connection is lost or silent; the session may still be alive on the server. */
  suspended: (event: { sessionId: string; reason: 'disconnected' | 'silent' }) => void;
  /** The same session is back. */
  reconnected: (event: { sessionId: string }) => void;
  /** The server ended the session: its ephemeral nodes are gone. */
  expired: (event: { sessionId: string }) => void;
  closed: () => void;
  error: (error: BellwetherError) => void;
}

const { Exception } = zookeeper;
const LOSS_CODES = new Set([Exception.CONNECTION_LOSS, Exception.SESSION_EXPIRED]);

/**
 * One ZooKeeper session that the program always knows the state of:
 * disconnected is not expired; a silent server is noticed within two thirds
 * of the negotiated timeout; after expiry a new session is opened and every
 * ephemeral node and watch declared through this object is restored, then
 * the `onConnected` callbacks run again.
 */
export class ZkSession extends EventEmitter<ZkSessionEvents> {
  readonly #settings: ZkSessionSettings;
  /** The credentials sent on every connection: the settings', with the primary's in place of `from-primary` once start() has them. */
  #auth: DigestAuth[];
  readonly #servers: number;
  readonly #queue: EventQueue;
  readonly #onConnected = new Set<(event: { sessionId: string }) => unknown>();
  readonly #onExpire = new Set<(event: { sessionId: string }) => unknown>();
  readonly #watches = new Set<PersistentWatch<unknown, unknown>>();
  readonly #ephemerals = new Set<Ephemeral>();
  #state: ZkSessionState = 'latent';
  #expiries = 0;
  #suspensions = 0;
  /** Aborted by close(): cuts retry delays short. */
  readonly #closing = unlimitedListeners(new AbortController());
  #transport: Transport | undefined;
  #sessionId: string | undefined;
  #liveness: NodeJS.Timeout | undefined;
  #connectedWaiters: (() => void)[] = [];
  #restoreGeneration = 0;
  /** Retries waiting for any connection to come up. */
  #transportUp: (() => void)[] = [];
  #notifications = 0;
  readonly #oneShot = new Map<string, Set<(change: NodeChange) => unknown>>();
  readonly #oneShotWatchers = new Map<string, (event: { getType(): number }) => void>();
  #operations = 0;
  /** Why the session closed by itself (refused credentials): what start() rejects with. */
  #failure: BellwetherError | undefined;
  #log: Logger;

  constructor(options: ZkSessionOptions) {
    super();
    this.#settings = resolveZkOptions(options);
    if (this.#fromPrimary() && typeof process.send !== 'function') {
      throw new BellwetherError(
        ErrorCodes.INVALID_OPTION,
        "auth { scheme: 'from-primary' } works only in a worker forked by a Supervisor or installForkHook given zk (this process has no IPC channel)",
      );
    }
    this.#auth = this.#settings.auth.filter((entry) => entry.scheme === 'digest');
    this.#log = checkLogger(options.logger) ?? NO_LOG;
    this.#servers = this.#settings.connect.split('/')[0]!.split(',').length;
    this.#queue = new EventQueue((err) => this.#report(callbackFailed('ZooKeeper event handler', err)));
  }

  get state(): ZkSessionState {
    return this.#state;
  }

  /** Requests sent to ZooKeeper so far (each retry counts), for metrics and benchmarks. */
  get operations(): number {
    return this.#operations;
  }

  /** Watch notifications received from the server so far (all kinds), for metrics and tests. */
  get notifications(): number {
    return this.#notifications;
  }

  /**
   * Milliseconds since a server last answered this session: what decides
   * how long the session may still be alive on the server. 0 before start.
   */
  silence(): number {
    return this.#transport ? performance.now() - this.#transport.lastHeard : 0;
  }

  /** Sessions of this object that expired (each replaced by a new one, unless onExpire is 'exit'). */
  get expiries(): number {
    return this.#expiries;
  }

  /** Times this object's session was suspended (connection lost, or the server silent) while connected. */
  get suspensions(): number {
    return this.#suspensions;
  }

  /** Hex id of the current session, once connected. */
  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  /**
   * The current session's password, as ZooKeeper's Java client's
   * `getSessionPasswd()`: with the id it identifies the session to a server.
   */
  get sessionPassword(): Buffer | undefined {
    return this.#sessionId === undefined ? undefined : this.#transport?.session.password;
  }

  /** The session timeout the server granted (ms), once connected. */
  get timeout(): number | undefined {
    return this.#sessionId === undefined ? undefined : this.#transport?.negotiatedTimeout;
  }

  /** True when the session has credentials (the `auth` option): it may create nodes with the `'creator'` ACLs. */
  get authenticated(): boolean {
    return this.#settings.auth.length > 0;
  }

  /** Copy of the settings, for a forked process to open its own session with. */
  settings(): ZkSessionSettings {
    return structuredClone(this.#settings);
  }

  /** Connects; resolves once the first session is established and restored, or rejects after `connectTimeout`. */
  async start(): Promise<void> {
    if (this.#state === 'closed') throw new BellwetherError(ErrorCodes.CLOSED, 'ZkSession was closed; create a new one');
    if (this.#state !== 'latent') throw new BellwetherError(ErrorCodes.ALREADY_STARTED, 'ZkSession is already started');
    this.#state = 'connecting';
    const began = performance.now();
    if (this.#fromPrimary()) {
      // Within the same connectTimeout: a primary that never answers fails start() as a server that never does.
      try {
        const primary = await askPrimaryForAuth(this.#settings.connectTimeout, this.#closing.signal);
        this.#auth = this.#settings.auth.flatMap((entry) => (entry.scheme === 'digest' ? [entry] : primary));
      } catch (err) {
        await this.close();
        throw err;
      }
      if ((this.#state as ZkSessionState) === 'closed') throw new BellwetherError(ErrorCodes.CLOSED, 'ZkSession was closed while starting');
    }
    this.#open();
    const tick = Math.max(10, Math.floor(this.#settings.sessionTimeout / 10));
    this.#liveness = setInterval(() => this.#checkLiveness(), tick);
    this.#liveness.unref();
    const connected = new Promise<void>((resolve) => this.#connectedWaiters.push(resolve));
    if (!(await settledWithin(Math.max(0, this.#settings.connectTimeout - (performance.now() - began)), connected))) {
      await this.close();
      throw new BellwetherError(
        ErrorCodes.ZK_CONNECT_TIMEOUT,
        `no ZooKeeper session from ${this.#settings.connect} within ${this.#settings.connectTimeout} ms`,
      );
    }
    if ((this.#state as ZkSessionState) === 'closed') throw this.#failure ?? new BellwetherError(ErrorCodes.CLOSED, 'ZkSession was closed while starting');
  }

  /** Whether the settings stand in for the primary's credentials (a worker's): start() asks for them. */
  #fromPrimary(): boolean {
    return this.#settings.auth.some((entry) => entry.scheme === 'from-primary');
  }

  /** Closes the session on the server (its ephemerals vanish at once). Calling it again is harmless. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasOpen = this.#state !== 'latent';
    this.#state = 'closed';
    // Ends retry delays now: their timers are unref'd, and a call waiting on
    // one must settle (BW_ERR_CLOSED) even when nothing else holds the process.
    this.#closing.abort();
    clearInterval(this.#liveness);
    for (const watch of this.#watches) watch.close();
    this.#ephemerals.clear();
    const transport = this.#transport;
    this.#transport = undefined;
    if (transport) await transport.closeSession(Math.max(1000, this.#settings.sessionTimeout));
    for (const resolve of [...this.#connectedWaiters.splice(0), ...this.#transportUp.splice(0)]) resolve();
    if (!wasOpen) return;
    this.#log.info({ event: 'closed', sessionId: this.#sessionId }, `ZooKeeper session ${this.#sessionId ?? '(none)'} closed`);
    this.#queue.push(() => this.emit('closed'));
  }

  /** @internal A logger for a session that was given none (an adapter's default: Fastify's `app.log`). */
  adoptLogger(logger: Logger): void {
    if (this.#log === NO_LOG) this.#log = logger;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Holds the delivery of events and callbacks (nothing is dropped), e.g. while forking. */
  pause(): void {
    this.#queue.pause();
  }

  /** Delivers what `pause()` held, in order. */
  resume(): void {
    this.#queue.resume();
  }

  /** Runs for every new session (the first, and each one after an expiry), after it is restored. Returns an unsubscribe. */
  onConnected(callback: (event: { sessionId: string }) => unknown): () => void {
    this.#onConnected.add(callback);
    if (this.#state === 'connected' && this.#sessionId) {
      const sessionId = this.#sessionId;
      this.#queue.push(() => callback({ sessionId }));
    }
    return () => this.#onConnected.delete(callback);
  }

  /** Runs for every expiry, before a new session is opened (or before the process exits). Returns an unsubscribe. */
  onExpire(callback: (event: { sessionId: string }) => unknown): () => void {
    this.#onExpire.add(callback);
    return () => this.#onExpire.delete(callback);
  }

  // ---- connection state machine ----

  #open(session?: { id: Buffer; password: Buffer }): void {
    this.#transport = new Transport(
      {
        connect: this.#settings.connect,
        sessionTimeout: this.#settings.sessionTimeout,
        auth: this.#auth,
        onNotification: () => void (this.#notifications += 1),
        ...(session ? { session } : {}),
      },
      (transport, state) => this.#onTransportState(transport, state),
    );
  }

  #onTransportState(transport: Transport, state: TransportState): void {
    if (transport !== this.#transport || this.#state === 'closed') return;
    switch (state) {
      case 'connected':
        for (const resolve of this.#transportUp.splice(0)) resolve();
        if (this.#sessionId === transport.sessionId && this.#state === 'suspended') {
          this.#state = 'connected';
          const sessionId = this.#sessionId;
          this.#log.info({ event: 'reconnected', sessionId }, `ZooKeeper session ${sessionId} reconnected`);
          this.#queue.push(() => this.emit('reconnected', { sessionId }));
          // Anything that failed while we were away is done again now.
          this.#restore(false);
        } else if (this.#sessionId === transport.sessionId) {
          // Back before the new session was fully restored: restore it again.
          this.#restore(true);
        } else {
          this.#sessionId = transport.sessionId;
          this.#restore(true);
        }
        break;
      case 'disconnected':
        this.#suspend('disconnected');
        break;
      case 'expired':
        void this.#expired(transport);
        break;
      case 'auth-failed':
        this.#failure = new BellwetherError(ErrorCodes.ZK_AUTH_FAILED, `ZooKeeper refused the credentials of ${this.#settings.connect}`);
        this.#report(this.#failure);
        void this.close();
        break;
    }
  }

  /**
   * Re-creates declared ephemerals, then re-arms every watch (delivering
   * what changed meanwhile); for a new session, then announces it and runs
   * the onConnected callbacks, in that order.
   */
  #restore(newSession: boolean): void {
    const generation = ++this.#restoreGeneration;
    const transport = this.#transport;
    const sessionId = this.#sessionId!;
    void (async () => {
      if (newSession && this.#auth.length > 0) {
        // The server answers the credentials before this: refused, the session never counts as connected.
        const answered = await this.#call('exists', '/', false, (c, done) => c.exists('/', (e) => done(e))).then(
          () => true,
          () => false,
        );
        if (!answered) return; // refused (closing now), or the connection was lost (a later restore announces)
      }
      await Promise.all([...this.#ephemerals].map((ephemeral) => ephemeral.ensure()));
      await Promise.all([...this.#watches].map((watch) => watch.rearm()));
      // A later restore (the connection came back again meanwhile) announces instead; so does
      // the one that runs when a connection lost during this restore comes back.
      if (!newSession || generation !== this.#restoreGeneration || transport !== this.#transport || this.#state === 'closed') return;
      if (!transport?.connected) return;
      this.#state = 'connected';
      const timeout = transport!.negotiatedTimeout;
      this.#log.info({ event: 'connected', sessionId, timeout }, `ZooKeeper session ${sessionId} connected (timeout ${timeout} ms)`);
      this.#queue.push(() => this.emit('connected', { sessionId, timeout }));
      for (const callback of this.#onConnected) this.#queue.push(() => callback({ sessionId }));
      for (const resolve of this.#connectedWaiters.splice(0)) resolve();
    })();
  }

  /** A session exists (announced, being restored, or suspended): declarations act on it now. */
  #hasSession(): boolean {
    return this.#sessionId !== undefined && this.#state !== 'closed' && this.#state !== 'latent';
  }

  #suspend(reason: 'disconnected' | 'silent'): void {
    if (this.#state !== 'connected') return;
    this.#state = 'suspended';
    const sessionId = this.#sessionId!;
    this.#log.warn(
      { event: 'suspended', sessionId, reason },
      `ZooKeeper session ${sessionId} suspended: ${reason === 'silent' ? 'the server has not answered for two thirds of the timeout' : 'disconnected'}`,
    );
    this.#queue.push(() => {
      this.#suspensions += 1;
      this.emit('suspended', { sessionId, reason });
    });
  }

  /** node-zookeeper-client has no read timeout: a stalled or cut-off server is noticed here. */
  #checkLiveness(): void {
    const transport = this.#transport;
    if (!transport || this.#state === 'closed') return;
    const timeout = transport.negotiatedTimeout;
    const now = performance.now();
    // Connected: announced, or still being restored (a new session): a silent server is left either way.
    const established = transport.connected && (this.#state === 'connected' || this.#state === 'connecting');
    if (established && now - transport.lastHeard > (2 * timeout) / 3) {
      this.#suspend('silent');
      transport.reconnect();
    } else if (
      this.#state !== 'connected' &&
      transport.attemptStartedAt !== undefined &&
      now - transport.attemptStartedAt > Math.max((2 * timeout) / 3 / this.#servers, 50)
    ) {
      // Connected at the TCP level to a server that never answers: try the next one.
      transport.reconnect();
    }
  }

  async #expired(transport: Transport): Promise<void> {
    transport.abandon(Exception.SESSION_EXPIRED);
    const sessionId = this.#sessionId ?? transport.sessionId;
    this.#sessionId = undefined;
    this.#state = 'connecting';
    // One-shot watches died with the session; their owners re-check on the new one.
    this.#oneShot.clear();
    this.#oneShotWatchers.clear();
    const { onExpire } = this.#settings;
    this.#log.warn(
      { event: 'expired', sessionId, onExpire },
      `ZooKeeper session ${sessionId} expired: its ephemeral nodes are gone; ${onExpire === 'exit' ? `exiting with code ${SESSION_EXPIRED_EXIT_CODE}` : 'opening a new session'}`,
    );
    this.#queue.push(() => {
      this.#expiries += 1;
      this.emit('expired', { sessionId });
    });
    for (const callback of this.#onExpire) this.#queue.push(() => callback({ sessionId }));
    if (onExpire === 'exit') {
      this.#transport = undefined;
      this.#queue.push(() => process.exit(SESSION_EXPIRED_EXIT_CODE));
      return;
    }
    this.#open();
  }

  #report(error: BellwetherError): void {
    reportError(this, this.#log, error);
  }

  // ---- operations ----

  #client(): Client {
    if (this.#state === 'latent') throw new BellwetherError(ErrorCodes.INVALID_OPTION, 'ZkSession is not started: call start() first');
    if (this.#state === 'closed' || !this.#transport) throw new BellwetherError(ErrorCodes.CLOSED, 'ZkSession is closed');
    return this.#transport.client;
  }

  /** Runs one node-zookeeper-client call; idempotent ones are retried after a connection loss. */
  async #call<T>(operation: string, path: string | undefined, idempotent: boolean, run: (client: Client, done: (err: unknown, value?: T) => void) => void): Promise<T> {
    const { attempts, initialDelay, maxDelay } = this.#settings.retry;
    for (let attempt = 0; ; attempt++) {
      try {
        const client = await this.#clientWithCredentials();
        this.#operations += 1;
        return await new Promise<T>((resolve, reject) => run(client, (err, value) => (err ? reject(err) : resolve(value as T))));
      } catch (err) {
        const code = zkCodeOf(err);
        if (!idempotent || attempt >= attempts || code === undefined || !LOSS_CODES.has(code) || this.#state === 'closed') {
          throw fromZk(err, operation, path);
        }
        await this.#connectedAgain(Math.min(maxDelay, initialDelay * 2 ** attempt));
      }
    }
  }

  /**
   * The client, once a request handed to it goes out after the session's
   * credentials. While the connection is down, node-zookeeper-client queues
   * requests and, on reconnecting, sends them before it sends the
   * credentials again: the server would take them from no identity
   * (InvalidACL, NoAuth: final for an election). So with `auth` a call
   * waits for the connection (bounded as retries are), and then queues
   * behind the credentials. Not back in time: connection loss, as a request
   * lost on the way; the session expired meanwhile: session expired, as a
   * request queued in it.
   */
  async #clientWithCredentials(): Promise<Client> {
    const transport = this.#transport;
    if (this.#settings.auth.length === 0 || transport?.connected) return this.#client();
    this.#client(); // not started, or closed: says so now
    if (!(await this.#transportBack())) throw zkException(Exception.CONNECTION_LOSS);
    if (this.#transport !== transport && this.#state !== 'closed') throw zkException(Exception.SESSION_EXPIRED);
    return this.#client();
  }

  /**
   * @internal Resolves once a connection to a server is up (at once when it
   * is), or the session is closed: for a caller that must try a write again
   * after a connection loss, in the same session if it is still alive.
   */
  whenConnected(): Promise<void> {
    if (this.#state === 'closed' || this.#transport?.connected) return Promise.resolve();
    return new Promise<void>((resolve) => this.#transportUp.push(resolve));
  }

  /**
   * Waits `ms`, then until a connection is up again (bounded). It waits for
   * the transport, not for the `connected` event: a retry inside the
   * restoring of a new session must not wait for that restore to finish.
   */
  async #connectedAgain(ms: number): Promise<void> {
    await delay(ms, this.#closing.signal);
    await this.#transportBack();
  }

  /**
   * Waits until a connection is up or the session is closed (true), for at
   * most a session timeout and a connect timeout (false): a session not
   * back by then is gone or unreachable.
   */
  async #transportBack(): Promise<boolean> {
    if (this.#transport?.connected || this.#state === 'closed') return true;
    const bound = this.#settings.sessionTimeout + this.#settings.connectTimeout;
    let timer: NodeJS.Timeout | undefined;
    const back = await Promise.race([
      new Promise<boolean>((resolve) => this.#transportUp.push(() => resolve(true))),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), bound);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    return back;
  }

  /**
   * Creates a node. `acl` (default `'open'`): a named ACL (`'open'`,
   * `'creator'`, `'creator-read-all'`, `'read-only'`) or a list of entries
   * (see `AclEntry`). The `'creator'` ones need the `auth` option.
   */
  async create(path: string, data: Buffer | string = Buffer.alloc(0), options: { mode?: CreateMode; acl?: Acl } = {}): Promise<string> {
    checkPath(path);
    const mode = options.mode ?? 'persistent';
    if (typeof mode !== 'string' || !Object.hasOwn(MODES, mode)) throw new BellwetherError(ErrorCodes.INVALID_OPTION, `create mode must be one of ${Object.keys(MODES).join(', ')}`);
    const acl = toZkAcl(checkAclFor(options.acl, this.authenticated, 'open', 'create acl'));
    return this.#call<string>('create', path, false, (c, done) => c.create(path, toBuffer(data), acl, MODES[mode], done));
  }

  /** Data and stat of a node; rejects with BW_ERR_ZK_NO_NODE when it does not exist. */
  async get(path: string): Promise<NodeSnapshot> {
    checkPath(path);
    return this.#read(path);
  }

  async #read(path: string, watcher?: () => void): Promise<NodeSnapshot> {
    const [data, stat] = await this.#call<[Buffer, RawStat]>('get', path, true, (c, done) =>
      watcher ? c.getData(path, watcher, (e, d, s) => done(e, [d, s])) : c.getData(path, (e, d, s) => done(e, [d, s])),
    );
    return { data: data ?? Buffer.alloc(0), stat: toStat(stat) };
  }

  /** Sets data; with `version`, only if the node is at that version (BW_ERR_ZK_BAD_VERSION otherwise). */
  async set(path: string, data: Buffer | string, version = -1): Promise<Stat> {
    checkPath(path);
    return toStat(await this.#call<RawStat>('set', path, false, (c, done) => c.setData(path, toBuffer(data), version, done)));
  }

  /**
   * The node's stat (or `null`) with a one-shot watch: `callback` runs once,
   * on the session's queue, at the next change of the node (created,
   * deleted, data changed), with what happened. Not restored after expiry:
   * for that, `watch()`.
   */
  async existsWatch(path: string, callback: (change: NodeChange) => unknown): Promise<Stat | null> {
    checkPath(path);
    const raw = await this.#call<RawStat | null>('exists', path, true, (c, done) => {
      // Registered with each attempt: a retry after an expiry (which drops every one-shot watch) keeps it.
      let callbacks = this.#oneShot.get(path);
      if (!callbacks) this.#oneShot.set(path, (callbacks = new Set()));
      callbacks.add(callback);
      c.exists(path, this.#oneShotWatcher(path), (e, s) => done(e, s ?? null));
    });
    return raw ? toStat(raw) : null;
  }

  /**
   * One watcher function per path, shared by every `existsWatch` on it: the
   * client keeps a listener per distinct function, so many callers on one
   * path would otherwise pile up listeners (and warnings).
   */
  #oneShotWatcher(path: string): (event: { getType(): number }) => void {
    let watcher = this.#oneShotWatchers.get(path);
    if (!watcher) {
      watcher = (event) => {
        const callbacks = this.#oneShot.get(path);
        this.#oneShot.delete(path);
        this.#oneShotWatchers.delete(path);
        const change = NODE_CHANGES[event.getType()] ?? 'changed';
        for (const callback of callbacks ?? []) this.#queue.push(() => callback(change));
      };
      this.#oneShotWatchers.set(path, watcher);
    }
    return watcher;
  }

  /** The node's stat, or `null` when it does not exist. */
  async exists(path: string): Promise<Stat | null> {
    checkPath(path);
    const raw = await this.#call<RawStat | null>('exists', path, true, (c, done) => c.exists(path, (e, s) => done(e, s ?? null)));
    return raw ? toStat(raw) : null;
  }

  async children(path: string): Promise<string[]> {
    checkPath(path);
    return (await this.#childrenSnapshot(path)).children;
  }

  async #childrenSnapshot(path: string, watcher?: () => void): Promise<ChildrenSnapshot> {
    const [children, stat] = await this.#call<[string[], RawStat]>('children', path, true, (c, done) =>
      watcher
        ? c.getChildren(path, watcher, (e, ch, s) => done(e, [ch, s]))
        : c.getChildren(path, (e, ch, s) => done(e, [ch, s])),
    );
    return { children: [...children].sort(), stat: toStat(stat) };
  }

  /** Deletes a node; with `version`, only at that version. */
  async delete(path: string, version = -1): Promise<void> {
    checkPath(path);
    await this.#call<void>('delete', path, false, (c, done) => c.remove(path, version, done));
  }

  /**
   * Creates `path` and any missing parents (persistent), each with `acl`
   * (default `'open'`, as `create`); existing nodes are left as they are.
   */
  async mkdirp(path: string, data: Buffer | string = Buffer.alloc(0), options: { acl?: Acl } = {}): Promise<void> {
    checkPath(path);
    const acl = toZkAcl(checkAclFor(options.acl, this.authenticated, 'open', 'mkdirp acl'));
    if (path === '/') return;
    const segments = path.slice(1).split('/');
    let current = '/';
    for (const [index, segment] of segments.entries()) {
      current = joinPath(current, segment);
      try {
        await this.#call('mkdirp', current, false, (c, done) =>
          c.create(current, index === segments.length - 1 ? toBuffer(data) : Buffer.alloc(0), acl, MODES.persistent, done),
        );
      } catch (err) {
        const code = (err as BellwetherError).code;
        if (code === ErrorCodes.ZK_NODE_EXISTS) continue;
        // ZooKeeper checks the parent's ACL before it looks for the node: a node that exists under a
        // parent we may not create in is refused, not found. It is there all the same.
        if (code === ErrorCodes.ZK_NO_AUTH && (await this.exists(current))) continue;
        throw err;
      }
    }
  }

  /** Deletes `path` and everything below it, at any depth (children first). Missing nodes are fine. */
  async removeRecursive(path: string): Promise<void> {
    checkPath(path);
    let children: string[];
    try {
      children = await this.children(path);
    } catch (err) {
      if ((err as BellwetherError).code === ErrorCodes.ZK_NO_NODE) return;
      throw err;
    }
    await Promise.all(children.map((child) => this.removeRecursive(joinPath(path, child))));
    try {
      await this.delete(path);
    } catch (err) {
      const code = (err as BellwetherError).code;
      if (code === ErrorCodes.ZK_NO_NODE) return;
      // A child appeared meanwhile: go again.
      if (code === ErrorCodes.ZK_NOT_EMPTY) return this.removeRecursive(path);
      throw err;
    }
  }

  /** Several writes that all happen or none: `session.transaction().create(...).set(...).commit()`. */
  transaction(): Transaction {
    this.#client(); // not started, or closed: says so now
    return new Multi((build) => this.#call<void>('transaction', undefined, false, build));
  }

  /**
   * Guarantees that reads issued after it resolves see every write committed
   * before it was called. node-zookeeper-client cannot send ZooKeeper's
   * `sync`, so this sends a multi-op holding one version check of `/` (any
   * version): a quorum operation that changes nothing, ordered through the
   * leader like every write. A server answers it only after applying all
   * writes committed before it, and a session's requests are answered in
   * order, so later reads see at least that state. The `path` argument is
   * checked for validity only.
   */
  async sync(path = '/'): Promise<void> {
    checkPath(path);
    await this.#call<unknown>('sync', path, true, (c, done) =>
      c
        .transaction()
        .check('/', -1)
        .commit((err) => done(zkCodeOf(err) === Exception.NO_NODE ? null : err)),
    );
  }

  // ---- what survives expiry ----

  /**
   * Declares an ephemeral node owned by this object: created now (or on the
   * next connection), and again in every new session after an expiry.
   * Parents are created as needed. `close()` on the handle deletes it.
   */
  async ephemeral(path: string, data: Buffer | string = Buffer.alloc(0)): Promise<EphemeralHandle> {
    checkPath(path);
    if (path === '/') throw new BellwetherError(ErrorCodes.INVALID_PATH, 'the root cannot be an ephemeral node');
    if (this.#state === 'closed') throw new BellwetherError(ErrorCodes.CLOSED, 'ZkSession is closed');
    const ephemeral = new Ephemeral(this, path, toBuffer(data), {
      sessionId: () => this.#sessionId,
      report: (err: BellwetherError) => this.#report(err),
      forget: (e: Ephemeral) => this.#ephemerals.delete(e),
    });
    this.#ephemerals.add(ephemeral);
    // Also while a new session is being restored: that restore has already taken its list.
    if (this.#hasSession()) await ephemeral.ensure();
    return ephemeral;
  }

  /**
   * A data watch that stays armed across notifications, reconnects and
   * expiry. Changes that happen between a notification and the re-arm
   * (deleted, then created again) are found by comparing stats and delivered.
   */
  watch(path: string, handler: (event: NodeEvent) => unknown): Subscription<NodeSnapshot> {
    checkPath(path);
    return this.#subscribe<NodeSnapshot, NodeEvent>(path, handler, (p, watcher) => this.#readOrAwaitCreation(p, watcher, this.#read.bind(this)), diffNode);
  }

  /** A children watch that stays armed, like `watch()`. */
  watchChildren(path: string, handler: (event: ChildrenEvent) => unknown): Subscription<ChildrenSnapshot> {
    checkPath(path);
    return this.#subscribe<ChildrenSnapshot, ChildrenEvent>(
      path,
      handler,
      (p, watcher) => this.#readOrAwaitCreation(p, watcher, this.#childrenSnapshot.bind(this)),
      diffChildren,
    );
  }

  /** Reads with a watch; for a missing node, sets an existence watch instead (reading it if it appeared meanwhile). */
  async #readOrAwaitCreation<T>(path: string, watcher: () => void, read: (path: string, watcher: () => void) => Promise<T>): Promise<T | null> {
    // A node created and deleted again between the reads is read again, as often as it takes:
    // an error here would stop the watch for good (and leave its `ready` unsettled).
    for (;;) {
      try {
        return await read(path, watcher);
      } catch (err) {
        if ((err as BellwetherError).code !== ErrorCodes.ZK_NO_NODE) throw err;
        const stat = await this.#call<RawStat | null>('exists', path, true, (c, done) => c.exists(path, watcher, (e, s) => done(e, s ?? null)));
        if (!stat) return null;
      }
    }
  }

  #subscribe<Snapshot, Event>(
    path: string,
    handler: (event: Event) => unknown,
    read: (path: string, watcher: () => void) => Promise<Snapshot | null>,
    diff: (path: string, before: Snapshot | null, after: Snapshot | null) => Event[],
  ): Subscription<Snapshot> {
    if (typeof handler !== 'function') throw new BellwetherError(ErrorCodes.INVALID_OPTION, 'watch handler must be a function');
    if (this.#state === 'closed') throw new BellwetherError(ErrorCodes.CLOSED, 'ZkSession is closed');
    const watch: PersistentWatch<Snapshot, Event> = new PersistentWatch<Snapshot, Event>({
      path,
      read,
      diff,
      deliver: (event) => this.#queue.push(() => (watch.closed ? undefined : handler(event))),
      onError: (err) => {
        if (!isConnectionTrouble((err as BellwetherError).code)) this.#report(fromZk(err, 'watch', path));
      },
      onClose: () => this.#watches.delete(watch as PersistentWatch<unknown, unknown>),
    });
    this.#watches.add(watch as PersistentWatch<unknown, unknown>);
    // Before start(), the first session arms it; during a restore, it is armed now (the restore has its list).
    if (this.#hasSession()) void watch.rearm();
    return watch;
  }
}

function toBuffer(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data) : data;
}

/**
 * Every retry waiting for its delay listens on the session's closing signal
 * (and stops listening when it ends): more than ten calls retrying at once,
 * after a connection loss, are no leak, and must not print one.
 */
function unlimitedListeners(controller: AbortController): AbortController {
  setMaxListeners(0, controller.signal);
  return controller;
}
