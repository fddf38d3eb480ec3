import type { Socket } from 'node:net';
import zookeeper, { type Client } from 'node-zookeeper-client';
import { sessionIdHex } from './raw-stat.js';
import { zkException } from './zk-errors.js';

/** The parts of node-zookeeper-client's ConnectionManager (1.1.3) we hook into. */
interface ConnectionManagerInternals {
  socket?: Socket;
  /** The connect attempt's timer: not unref'd, and only cleared by a socket error or a connection. */
  connectTimeoutHandler: ReturnType<typeof setTimeout> | null;
  state: number;
  setState(state: number): void;
  onSocketData(buffer: Buffer): void;
  findNextServer(callback: (server: unknown) => void): void;
  connect(): void;
  packetQueue: { shift(): { callback?: (error: unknown) => void } | undefined };
  watcherManager: { emit(event: unknown): void };
}

const CM_CLOSING = -1;

export type TransportState = 'connected' | 'disconnected' | 'expired' | 'auth-failed';

export interface TransportOptions {
  connect: string;
  sessionTimeout: number;
  auth: readonly { scheme: string; credentials: string }[];
  /** Called once per watch notification the server sends. */
  onNotification?: () => void;
  /** Reconnect to this session instead of opening a new one. */
  session?: { id: Buffer; password: Buffer };
}

/**
 * One node-zookeeper-client client, with what it lacks for liveness: when
 * the server last said anything, and when the current connection attempt
 * began. Its reconnects keep the session (and re-send watches); after
 * expiry it is dead for good and a new Transport is needed.
 */
export class Transport {
  readonly client: Client;
  readonly #manager: ConnectionManagerInternals;
  /** performance.now() of the last bytes from a server. */
  lastHeard = performance.now();
  /** performance.now() when the current connection attempt started, while not connected. */
  attemptStartedAt: number | undefined;
  #abandoned = false;
  #connected = false;

  constructor(options: TransportOptions, onState: (transport: Transport, state: TransportState) => void) {
    this.client = zookeeper.createClient(options.connect, {
      sessionTimeout: options.sessionTimeout,
      // After trying every server, wait at most this long before the next round.
      spinDelay: 50,
      retries: 0,
      ...(options.session ? { sessionId: options.session.id, sessionPassword: options.session.password } : {}),
    } as zookeeper.Option);
    this.#manager = (this.client as unknown as { connectionManager: ConnectionManagerInternals }).connectionManager;
    const manager = this.#manager;
    const onSocketData = manager.onSocketData;
    manager.onSocketData = (buffer: Buffer): void => {
      this.lastHeard = performance.now();
      onSocketData.call(manager, buffer);
    };
    const watcherManager = manager.watcherManager;
    const emit = watcherManager.emit;
    watcherManager.emit = (event: unknown): void => {
      options.onNotification?.();
      emit.call(watcherManager, event);
    };
    const findNextServer = manager.findNextServer;
    manager.findNextServer = (callback): void => {
      findNextServer.call(manager, (server: unknown) => {
        this.attemptStartedAt = performance.now();
        callback(server);
      });
    };
    for (const { scheme, credentials } of options.auth) this.client.addAuthInfo(scheme, Buffer.from(credentials));
    this.client.on('state', (state) => {
      if (this.#abandoned) return;
      this.#connected = state === zookeeper.State.SYNC_CONNECTED;
      if (state === zookeeper.State.SYNC_CONNECTED) {
        this.attemptStartedAt = undefined;
        onState(this, 'connected');
      } else if (state === zookeeper.State.DISCONNECTED) onState(this, 'disconnected');
      else if (state === zookeeper.State.EXPIRED) onState(this, 'expired');
      else if (state === zookeeper.State.AUTH_FAILED) onState(this, 'auth-failed');
    });
    this.client.connect();
  }

  /** Whether this client holds a live connection to a server right now. */
  get connected(): boolean {
    return this.#connected && !this.#abandoned;
  }

  get sessionId(): string {
    return sessionIdHex(this.client.getSessionId());
  }

  get session(): { id: Buffer; password: Buffer } {
    return { id: this.client.getSessionId(), password: this.client.getSessionPassword() };
  }

  get negotiatedTimeout(): number {
    return this.client.getSessionTimeout();
  }

  /** Drops the connection; the client reconnects (next server) with the same session. */
  reconnect(): void {
    this.#manager.socket?.destroy();
  }

  /** Closes the session on the server (its ephemerals vanish now), waiting at most `timeoutMs`. */
  async closeSession(timeoutMs: number): Promise<void> {
    if (this.#abandoned) return;
    // Not connected: there is no one to tell (the server expires the session by itself).
    if (!this.#connected) return this.abandon();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#manager.socket?.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.client.close();
    });
    this.abandon();
  }

  /**
   * Forgets this client without closing its session on the server: no
   * CloseSession, no reconnect. Operations still queued fail with `code`
   * (CONNECTION_LOSS unless given; SESSION_EXPIRED once the session expired,
   * as ZooKeeper's Java client does) instead of hanging.
   */
  abandon(code: number = zookeeper.Exception.CONNECTION_LOSS): void {
    if (this.#abandoned) return;
    this.#abandoned = true;
    const manager = this.#manager;
    manager.setState(CM_CLOSING);
    // Abandoned from inside the client's socket-closed handler (a 'suspended'
    // listener that closes the session), the client would connect again right
    // after: it connects no more.
    manager.connect = (): void => {};
    // A socket destroyed while it connects closes without an error, which would
    // leave the connect timer (the session timeout) holding the process; and
    // an attempt still in the client's spin delay would open a socket and arm
    // that timer later. Both are dropped, now and as they come.
    clearTimeout(manager.connectTimeoutHandler ?? undefined);
    Object.defineProperty(manager, 'connectTimeoutHandler', { configurable: true, get: () => null, set: (timer: ReturnType<typeof setTimeout>) => clearTimeout(timer) });
    let socket = manager.socket;
    Object.defineProperty(manager, 'socket', {
      configurable: true,
      get: () => socket,
      set: (late: Socket | undefined) => {
        socket = late;
        late?.destroy();
      },
    });
    socket?.destroy();
    const loss = zkException(code);
    for (let packet = this.#manager.packetQueue.shift(); packet; packet = this.#manager.packetQueue.shift()) {
      packet.callback?.(loss);
    }
  }
}
