import cluster from 'node:cluster';
import fs from 'node:fs';
import { ENV, type MetricsMessage, ORPHAN_EXIT_CODE, PARENT_CHECK_MS, type WorkerMessage, isPrimaryMessage } from '../cluster/protocol.js';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { checkFunction, invalidOption } from '../validate.js';
import { type ZkSessionSettings, resolveZkOptions } from '../zk/options.js';
import { type HttpServer, drainServerUntil, onHttpListen, trackConnections } from './http-drain.js';
import { sendToPrimary } from './send-to-primary.js';

/** The worker side of a supervised cluster: liveness, lifecycle hooks, settings from the primary. */
export interface WorkerRuntime {
  /** True in a worker forked by the supervisor (its env was set by the primary and there is an IPC channel); false in what that worker forks. */
  readonly isSupervised: boolean;
  /** The worker's stable index 0..N-1, or `undefined` outside a supervised worker. */
  readonly index: number | undefined;
  /** Tells the primary this worker serves. Only the first call sends anything. */
  ready(): void;
  /**
   * From now on, a server listening does not make this worker ready to the
   * primary: only `ready()` does. For an app that must start more than its
   * server before it serves (the adapters call it when they are created, and
   * call `ready()` once started and listening). Call it before `listen()`;
   * after `ready()` it changes nothing.
   */
  deferReady(): void;
  /** Status code 0: sent at once and with every heartbeat. */
  healthy(): void;
  /** Status code 1..255 (your own meaning): sent at once and with every heartbeat until `healthy()`. */
  unhealthy(code: number): void;
  /**
   * Runs `cb` once this worker has booted (its entry script is loaded), or on
   * the next tick if it already has. Callbacks run one at a time in order; one
   * that throws is reported on stderr and the worker goes on. Never runs
   * outside a supervised worker.
   */
  afterFork(cb: () => unknown): void;
  /**
   * Runs `cb` as a graceful stop begins (the primary's request or SIGTERM),
   * while the worker's HTTP servers drain: end here what would hold the
   * drain until its deadline, such as server-sent event streams, long polls
   * and WebSockets. Callbacks run in registration order, each awaited and
   * isolated; `onShutdown` callbacks run once these and the drain are done.
   */
  onDraining(cb: () => unknown): void;
  /**
   * Runs `cb` on a graceful stop (the primary's request or SIGTERM), in
   * registration order, each awaited and isolated, once the worker's HTTP
   * servers are drained: every `node:http` and `node:https` server that
   * listened in this worker stops accepting, finishes its requests in
   * flight, answers `Connection: close` to the next request on each
   * keep-alive connection and closes idle ones (by three quarters of the
   * time the primary gives the stop; the last quarter is for these
   * callbacks). Then the worker disconnects and exits once its event loop
   * is empty. Close what else you hold here (pools, sessions, timers, other
   * servers) or the primary kills the worker after its shutdown timeout.
   */
  onShutdown(cb: () => unknown): void;
  /**
   * The primary's ZooKeeper settings, for this worker's own `new ZkSession(...)`; `undefined` if none.
   * Its credentials are `{ scheme: 'from-primary' }`: the session's `start()` asks the primary for them over IPC.
   */
  zkSettings(): ZkSessionSettings | undefined;
}

type Callback = () => unknown;

const DEFAULT_HEARTBEAT_MS = 1000;
/** The stop's budget when the primary did not say (a SIGTERM from elsewhere, an older primary): the supervisor's default shutdownTimeout. */
const DEFAULT_STOP_WITHIN_MS = 30_000;
/** How long the HTTP drain may take when the whole stop must end within `within` ms (the primary's SIGKILL): the last quarter is for onShutdown callbacks. */
function drainBudget(within: number): number {
  return Math.max(0, (within * 3) / 4);
}

class WorkerProcess implements WorkerRuntime {
  readonly isSupervised: boolean;
  readonly index: number | undefined;
  #code = 0;
  /** Singleton leases held in this worker. */
  #leads = 0;
  #readySent = false;
  #readyDeferred = false;
  #booted = false;
  #markBooted!: () => void;
  /** Resolves once the entry script has loaded. */
  readonly #bootDone = new Promise<void>((resolve) => (this.#markBooted = resolve));
  readonly #afterFork: Callback[] = [];
  #runningAfterFork = false;
  readonly #onShutdown: Callback[] = [];
  readonly #onDraining: Callback[] = [];
  readonly #onStopping = new Set<() => void>();
  #stoppingBegun = false;
  #stopping = false;
  /** Every http/https server that listened in this worker: drained on a graceful stop. */
  readonly #servers = new Set<HttpServer>();
  /** Once a stop began (performance.now()): by when every server must be drained; a later stop request may move it later. */
  #drainUntil: number | undefined;
  /** Set once we disconnect on purpose: that 'disconnect' is not the primary going away. */
  #leaving = false;

  readonly #primaryPid: number | undefined;
  readonly #heartbeatMs: number;
  readonly #zkSettings: string | undefined;
  readonly #killTimeout: number | undefined;

  constructor() {
    const index = process.env[ENV.index];
    const primaryPid = Number(process.env[ENV.primaryPid]);
    this.#heartbeatMs = Number(process.env[ENV.heartbeat]);
    this.#zkSettings = process.env[ENV.zkSettings];
    this.#killTimeout = millis(process.env[ENV.killTimeout]);
    // Read once, then gone from process.env: a child the app forks
    // (child_process.fork) would inherit them, take itself for a supervised
    // worker and fence itself off as an orphan, or ask the primary for its
    // ZooKeeper credentials (they never travel here: see zk-credentials.ts)
    // and wait in vain for an answer. The index stays: it is
    // documented for the app, and alone it makes no process a worker.
    for (const key of [ENV.primaryPid, ENV.heartbeat, ENV.zkSettings, ENV.killTimeout]) delete process.env[key];
    this.#primaryPid = Number.isInteger(primaryPid) && primaryPid > 0 ? primaryPid : undefined;
    this.isSupervised = index !== undefined && this.#primaryPid !== undefined && typeof process.send === 'function';
    // Only the supervised process has an index: a helper it forks inherits the variable, not the slot.
    this.index = this.isSupervised && index !== undefined && /^\d+$/.test(index) ? Number(index) : undefined;
  }

  deferReady(): void {
    if (this.#readySent || this.#readyDeferred) return;
    this.#readyDeferred = true;
    this.#send({ bellwether: 'defer-ready' });
  }

  ready(): void {
    if (this.#readySent) return;
    this.#readySent = true;
    this.#send({ bellwether: 'ready' });
  }

  healthy(): void {
    this.#code = 0;
    this.#heartbeat();
  }

  unhealthy(code: number): void {
    if (typeof code !== 'number' || !Number.isInteger(code) || code < 1 || code > 255) {
      throw invalidOption('unhealthy code', 'an integer from 1 to 255', code);
    }
    this.#code = code;
    this.#heartbeat();
  }

  afterFork(cb: Callback): void {
    this.#afterFork.push(checkFunction<Callback>(cb, 'afterFork callback'));
    if (this.#booted) this.#runAfterFork();
  }

  onDraining(cb: Callback): void {
    this.#onDraining.push(checkFunction<Callback>(cb, 'onDraining callback'));
  }

  onShutdown(cb: Callback): void {
    this.#onShutdown.push(checkFunction<Callback>(cb, 'onShutdown callback'));
  }

  zkSettings(): ZkSessionSettings | undefined {
    const json = this.#zkSettings;
    if (json === undefined || json === '') return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (err) {
      throw new BellwetherError(ErrorCodes.INVALID_OPTION, `${ENV.zkSettings} is not JSON`, { cause: err });
    }
    // The same checks as the primary's own options: a bad value fails here, not at connect.
    return resolveZkOptions(parsed as ZkSessionSettings);
  }

  /** Started once per process, at the first import in a supervised worker. */
  start(): void {
    // Before the entry script runs: every server it listens on is known, and counted from its first connection.
    onHttpListen((server) => {
      trackConnections(server);
      if (this.#servers.has(server)) return;
      this.#servers.add(server);
      // Kept while it may hold connections: a closed server has none left.
      server.once('close', () => this.#servers.delete(server));
      // Listening after the stop began (late app code): drained too, by the same deadline, once it listens.
      if (this.#drainUntil !== undefined) server.once('listening', () => void this.#drain(server));
    });
    const every = this.#heartbeatMs;
    const heartbeatMs = Number.isInteger(every) && every > 0 ? every : DEFAULT_HEARTBEAT_MS;
    // First the stop request's listener, then the first heartbeat: the
    // primary holds a stop back until it has heard from the worker, because
    // a message sent before this listener exists is lost.
    process.on('message', (message: unknown) => {
      if (!isPrimaryMessage(message)) return;
      if (message.bellwether === 'stopping') {
        this.#beginStopping();
        this.#send({ bellwether: 'stopping-ack' });
      } else void this.#shutdown(millis(message.within), message.within !== undefined);
    });
    // Sent from the event loop: a blocked loop sends nothing, which is the point.
    // Unref'd: liveness reporting alone must not keep a finished worker alive.
    setInterval(() => this.#heartbeat(), heartbeatMs).unref();
    this.#heartbeat();

    const parent = this.#primaryPid ?? process.ppid;
    // Prepended: Node's (and Bun's) cluster worker has its own 'disconnect'
    // listener that exits with 0; an orphan must exit with ORPHAN_EXIT_CODE.
    process.prependListener('disconnect', () => {
      if (!this.#leaving) this.#orphaned(`lost the IPC channel to primary ${parent}`);
    });
    // 'disconnect' is not enough: a runtime may not notice a SIGKILLed primary.
    // Linux reparents an orphan, so a changed ppid is the primary's death.
    const checkParent = (): void => {
      const ppid = process.ppid;
      if (ppid !== parent) this.#orphaned(`primary ${parent} is gone (parent is now ${ppid})`);
    };
    setInterval(checkParent, PARENT_CHECK_MS).unref();
    checkParent();

    // The primary's SIGTERM (a liveness kill) is followed by SIGKILL after its killTimeout.
    process.on('SIGTERM', () => void this.#shutdown(this.#killTimeout));
    // Ctrl-C reaches the whole process group: the primary decides how its workers stop.
    process.on('SIGINT', () => {});
  }

  /** @internal The bootstrap calls it once the entry script is loaded. */
  booted(): void {
    if (this.#booted || !this.isSupervised) return;
    this.#booted = true;
    this.#markBooted();
    this.#runAfterFork();
  }

  #runAfterFork(): void {
    if (this.#runningAfterFork) return; // the running loop picks up what was added
    this.#runningAfterFork = true;
    process.nextTick(async () => {
      let cb: Callback | undefined;
      while ((cb = this.#afterFork.shift())) await this.#isolated('afterFork callback', cb);
      this.#runningAfterFork = false;
    });
  }

  /**
   * @internal Counts a lease held from now until the returned release is called (idempotent); the primary
   * hears at once, and of the term (the singleton's name and fence): it measures handover gaps between workers.
   */
  lead(singleton?: string, fence?: bigint): () => void {
    const term = (leading: boolean): void => {
      if (singleton !== undefined && fence !== undefined) this.#send({ bellwether: 'metrics-term', singleton, fence: fence.toString(), leading });
    };
    this.#leads += 1;
    term(true);
    this.#heartbeat();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#leads -= 1;
      term(false);
      this.#heartbeat();
    };
  }

  /** @internal Runs `cb` synchronously as a graceful stop begins (at once if it has); returns an unsubscribe. */
  onStopping(cb: () => void): () => void {
    if (this.#stoppingBegun) {
      cb();
      return () => {};
    }
    this.#onStopping.add(cb);
    return () => void this.#onStopping.delete(cb);
  }

  /**
   * Singletons of a leaving worker stop contending: a job must not move into
   * it. Once, at the primary's 'stopping' (every worker is about to stop) or
   * at the start of this worker's own stop, whichever comes first.
   */
  #beginStopping(): void {
    if (this.#stoppingBegun) return;
    this.#stoppingBegun = true;
    for (const cb of this.#onStopping) {
      try {
        cb();
      } catch (err) {
        console.error(callbackFailed('stopping callback', err).message);
      }
    }
    this.#onStopping.clear();
  }

  #drain(server: HttpServer): Promise<void> {
    return drainServerUntil(server, () => this.#drainUntil!);
  }

  /**
   * `within`: ms until the primary's SIGKILL, if known. The primary's request
   * (`fromPrimary`) knows it for sure: it sets the deadline even once the stop
   * began. A SIGTERM to the whole process group (systemd) starts the stop with
   * killTimeout, and the primary's request that follows gives it its own time.
   */
  async #shutdown(within = DEFAULT_STOP_WITHIN_MS, fromPrimary = false): Promise<void> {
    const drainUntil = performance.now() + drainBudget(within);
    if (this.#stopping) {
      if (fromPrimary) this.#drainUntil = drainUntil;
      return;
    }
    this.#stopping = true;
    this.#drainUntil = drainUntil;
    // First, before any await.
    this.#beginStopping();
    // A stop that arrives while the entry script still loads waits for it:
    // its servers and callbacks are not there yet, and the script may still use
    // what they close. (What the script waits on that a stop must cancel, such
    // as an adapter's start still connecting to ZooKeeper, listens for the
    // stop's beginning, which comes first, before any await.)
    await this.#bootDone;
    // Requests in flight finish before onShutdown callbacks close what they may use (pools,
    // sessions); onDraining callbacks end what would hold the drain (streams, long polls).
    await Promise.all([
      ...[...this.#servers].map((server) => this.#drain(server)),
      (async () => {
        for (let i = 0; i < this.#onDraining.length; i++) await this.#isolated('onDraining callback', this.#onDraining[i]!);
      })(),
    ]);
    // By index: a callback registered while others run still runs.
    for (let i = 0; i < this.#onShutdown.length; i++) await this.#isolated('onShutdown callback', this.#onShutdown[i]!);
    this.#leaving = true;
    if (!process.connected) return;
    try {
      // Closes cluster-shared servers, waits for them, then the IPC channel;
      // the process then exits when nothing else is left. No process.exit():
      // in-flight work finishes or the primary's shutdown timeout ends it.
      if (cluster.worker) cluster.worker.disconnect();
      else process.disconnect?.();
    } catch {
      // The channel closed meanwhile: nothing left to disconnect.
    }
  }

  async #isolated(what: string, cb: Callback): Promise<void> {
    try {
      await cb();
    } catch (err) {
      // stderr, not an event: a worker has no one to listen, and one failing hook must not crash it.
      console.error(callbackFailed(`${what} of bellwether worker ${this.index ?? '?'} (pid ${process.pid})`, err));
    }
  }

  #heartbeat(): void {
    this.#send({ bellwether: 'heartbeat', code: this.#code, leads: this.#leads });
  }

  #send(message: WorkerMessage | MetricsMessage): void {
    if (this.isSupervised) sendToPrimary(message);
  }

  #orphaned(why: string): never {
    try {
      fs.writeSync(2, `bellwether worker ${this.index ?? '?'} (pid ${process.pid}): ${why}; exiting with ${ORPHAN_EXIT_CODE}\n`);
    } catch {
      // stderr may be gone with the primary.
    }
    // Fencing: an orphan must stop now, not after its shutdown hooks.
    process.exit(ORPHAN_EXIT_CODE);
  }
}

/** A positive integer of milliseconds, or undefined. */
function millis(value: unknown): number | undefined {
  const n = typeof value === 'string' && value !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined;
}

/**
 * One per process, even if two copies of bellwether are loaded (the
 * supervisor's bootstrap and the app's own): otherwise the app's hooks would
 * sit on a copy that never boots, and heartbeats would be sent twice.
 */
const SHARED = Symbol.for('bellwether.worker.v1');
const slot = globalThis as { [SHARED]?: WorkerProcess };
let instance = slot[SHARED];
if (instance === undefined) {
  instance = slot[SHARED] = new WorkerProcess();
  // Only the first copy starts the runtime: one heartbeat, one set of listeners.
  if (instance.isSupervised) instance.start();
}

export const worker: WorkerRuntime = instance;

/**
 * @internal Runs `cb` once this supervised worker begins a graceful stop;
 * never outside one. Returns an unsubscribe.
 */
export function onWorkerStopping(cb: () => void): () => void {
  // Another copy of bellwether may have made the shared instance: an older one has no such hook.
  const runtime = instance as Partial<WorkerProcess>;
  if (!worker.isSupervised || typeof runtime.onStopping !== 'function') return () => {};
  return runtime.onStopping(cb);
}

/**
 * @internal A singleton in this worker holds its lease from now until the
 * returned release is called: the primary replaces leading workers last in
 * a rolling restart, and sees where each term of `singleton` (fenced
 * `fence`) begins and ends. A no-op outside a supervised worker.
 */
export function workerLeads(singleton: string, fence: bigint): () => void {
  const runtime = instance as Partial<WorkerProcess>;
  if (!worker.isSupervised || typeof runtime.lead !== 'function') return () => {};
  // A runtime made by an older copy of bellwether takes no arguments: it counts the lease only.
  return runtime.lead(singleton, fence);
}

/** @internal The bootstrap marks the end of boot: afterFork callbacks may run. */
export function markBooted(): void {
  (instance as WorkerProcess).booted();
}
