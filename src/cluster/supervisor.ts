import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { EventEmitter } from 'eventemitter3';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { type Logger, reportError } from '../log/logger.js';
import { ClusterMetrics } from './cluster-metrics.js';
import { ControlSocket } from './control-socket.js';
import { type ResolvedSupervisorOptions, type SupervisorOptions, resolveSupervisorOptions } from './options.js';
import { settledWithin } from '../singleton/abort.js';
import { HostBallots } from './host-ballots.js';
import { ENV, type MetricsMessage, PARENT_CHECK_MS, type PrimaryMessage, isFleetMessage, isMetricsMessage, isWorkerMessage } from './protocol.js';
import { Slot, type SlotInfo, WorkerHandle } from './slot.js';
import { answerZkAuth, zkSettingsEnv } from './zk-credentials.js';

/** How long a full graceful stop waits for every worker to stop contending before it stops them anyway. */
const STOPPING_ACK_MS = 1000;

const BOOTSTRAP = fileURLToPath(new URL('../worker/bootstrap.js', import.meta.url));

export type KillReason = 'silent' | 'unhealthy' | 'boot-timeout';

export interface SupervisorEvents {
  /** A worker of a slot serves (it called `worker.ready()` or listens). */
  ready: (slot: SlotInfo) => void;
  /** A worker exited; `replaced` tells whether the slot forks again. */
  exit: (slot: SlotInfo, exit: { code: number | null; signal: string | null; replaced: boolean }) => void;
  /** A worker is being killed (SIGTERM, then SIGKILL after `killTimeout`). */
  kill: (slot: SlotInfo, reason: KillReason) => void;
  /** Every worker of a rolling restart was replaced. */
  restarted: () => void;
  /**
   * A rolling restart stopped at a replacement that did not become ready
   * (it exited or timed out at boot): the slot's old worker was kept, and
   * the slots after it were not touched. Also reported as `error`
   * (`BW_ERR_ROLLOUT_FAILED`) and in `rollout`.
   */
  rolloutFailed: (slot: SlotInfo, reason: string) => void;
  /** All workers exited after stop(). */
  stopped: () => void;
  /**
   * Every slot was given up (crash loop): no worker is left and none will be
   * forked again. The app decides; `bellwether start` stops and exits with
   * code 4 (`GIVEN_UP_EXIT_CODE`).
   */
  exhausted: (slots: SlotInfo[]) => void;
  /**
   * With `stopWithParent`: the process that started this primary is gone
   * (the primary was re-parented). A graceful stop follows at once.
   */
  orphaned: (event: { parent: number; ppid: number }) => void;
  error: (error: BellwetherError) => void;
}

type State = 'latent' | 'running' | 'stopping' | 'stopped';

/** The last rolling restart, for status: running, done, or where it stopped and why. */
export interface RolloutStatus {
  /** failed: a replacement did not become ready; aborted: the supervisor stopped meanwhile. */
  state: 'running' | 'done' | 'failed' | 'aborted';
  /** The slot whose replacement did not become ready. */
  slot?: number;
  reason?: string;
}

/**
 * A prefork primary over node:cluster (Node and Bun): N workers with stable
 * indexes, liveness by heartbeat, restarts with backoff and a crash-loop
 * cap, graceful and quick stop, rolling restart and scaling by signal.
 */
export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly #options: ResolvedSupervisorOptions;
  readonly #slots: Slot[] = [];
  /**
   * Every live worker: current ones, replacements of a rolling restart, and
   * retiring ones (rolled over or scaled away) until they exit. stop() waits
   * for all of them.
   */
  readonly #workers = new Set<WorkerHandle>();
  #state: State = 'latent';
  #liveness: NodeJS.Timeout | undefined;
  #parentCheck: NodeJS.Timeout | undefined;
  #control: ControlSocket | undefined;
  #stopped: Promise<void> | undefined;
  #rolling: Promise<void> | undefined;
  /** A SIGHUP (or call) during a rolling restart: one more round once it ends. */
  #rollAgain = false;
  #rollout: RolloutStatus | undefined;
  #exhausted = false;
  #started = false;
  /** With stopWithParent: the parent to outlive never (taken at construction, or given). */
  readonly #parent: number | undefined;
  readonly #signalHandlers: [NodeJS.Signals, () => void][] = [];
  readonly #metrics = new ClusterMetrics((err) =>
    this.#options.logger.warn({ event: 'metrics-failed', err }, `a metrics collection failed (${String(err)}): scrapes get their worker's own series until the next collection`),
  );
  /** With `zk`: the host's fleet ballots of the workers' `host+cluster` singletons, in the first session. */
  readonly #ballots: HostBallots | undefined;

  /** Checks every option (before anything forks). */
  constructor(options: SupervisorOptions) {
    super();
    this.#options = resolveSupervisorOptions(options);
    const { stopWithParent } = this.#options;
    this.#parent = stopWithParent === true ? process.ppid : stopWithParent === false ? undefined : stopWithParent;
    const [zk] = this.#options.zk;
    this.#ballots = zk && new HostBallots(zk, (error) => this.#report(error), this.#options.logger);
  }

  get state(): State {
    return this.#state;
  }

  /** Forks the workers; resolves once every slot has a ready worker (through restarts) or was given up. */
  async start(): Promise<void> {
    if (this.#started || this.#state !== 'latent') throw new BellwetherError(ErrorCodes.ALREADY_STARTED, 'Supervisor was already started');
    if (!cluster.isPrimary) throw new BellwetherError(ErrorCodes.INVALID_OPTION, 'Supervisor runs in the primary process, not in a worker');
    this.#started = true;
    const stoppedMeanwhile = (): BellwetherError => new BellwetherError(ErrorCodes.CLOSED, 'Supervisor was stopped while starting');
    if (this.#options.controlSocket !== false) {
      this.#control = new ControlSocket(this.#options.name, this.#options.controlSocket, () => ({ workers: this.status(), rollout: this.rollout }));
      try {
        await this.#control.listen();
      } catch (err) {
        throw this.#state === 'latent' ? err : stoppedMeanwhile();
      }
    }
    // stop() during listen(): nothing more may start.
    if (this.#state !== 'latent') throw stoppedMeanwhile();
    this.#state = 'running';
    cluster.setupPrimary({ exec: BOOTSTRAP, args: this.#options.args });
    const tick = Math.max(10, Math.min(this.#options.heartbeat, 250));
    this.#liveness = setInterval(() => this.#checkLiveness(), tick);
    if (this.#options.signals) this.#installSignals();
    if (this.#parent !== undefined) this.#watchParent(this.#parent);
    const ready = Array.from({ length: this.#options.workers }, (_, index) => {
      const slot = new Slot(index);
      this.#slots.push(slot);
      return this.#forkReady(slot);
    });
    await Promise.all(ready);
  }

  /** Per slot: index, pid, state, status code, restarts, uptime, memory. */
  status(): SlotInfo[] {
    return this.#slots.map((slot) => slot.info());
  }

  /** The last rolling restart (undefined before the first). */
  get rollout(): RolloutStatus | undefined {
    return this.#rollout && { ...this.#rollout };
  }

  /**
   * Stops every worker. Graceful (the default): workers run their
   * onShutdown callbacks, stop accepting and finish in-flight requests; any
   * still running after `shutdownTimeout` get SIGKILL. Not graceful: SIGKILL now.
   */
  stop(options: { graceful?: boolean } = {}): Promise<void> {
    const graceful = options.graceful ?? true;
    if (!graceful) for (const handle of this.#workers) handle.worker.process.kill('SIGKILL');
    if (this.#stopped) return this.#stopped;
    this.#state = 'stopping';
    clearInterval(this.#liveness);
    clearInterval(this.#parentCheck);
    for (const slot of this.#slots) {
      slot.retired = true;
      clearTimeout(slot.restartTimer);
      slot.settleReady(false);
    }
    this.#stopped = (async () => {
      // First every worker stops contending for singletons, then any stops: else a job released by
      // a worker that stops first would be taken by one that has not heard of the stop yet.
      if (graceful) await this.#announceStopping();
      // Every live worker, also those already retiring (rolled over, scaled away).
      await Promise.all([...this.#workers].map((handle) => this.#retire(handle, graceful)));
      // Nobody runs a job under the host's ballots any more: they go, and the fleet moves on at once.
      await this.#ballots?.close();
      await this.#control?.close();
      // Only now: until every worker is gone, a second SIGTERM must reach us (stop at once).
      this.#removeSignals();
      this.#state = 'stopped';
      this.emit('stopped');
    })();
    return this.#stopped;
  }

  /**
   * Replaces every worker, one slot at a time, in index order but slots whose
   * worker leads a singleton last: start the new one, wait until it is ready,
   * then stop the old one gracefully. Stops at the first
   * replacement that does not become ready, keeping that slot's old worker
   * (`rolloutFailed`). Asked again while running, it runs once more after
   * the current round, so every slot ends on the newest code.
   */
  rollingRestart(): Promise<void> {
    if (this.#rolling) {
      this.#rollAgain = true;
      return this.#rolling;
    }
    this.#rolling = (async () => {
      try {
        do {
          this.#rollAgain = false;
          this.#rollout = { state: 'running' };
          if (await this.#rollOnce()) {
            this.#rollout = { state: 'done' };
            this.#options.logger.info({ event: 'rollout-done' }, 'rolling restart done: every worker replaced');
            this.emit('restarted');
          }
        } while (this.#rollAgain && this.#state === 'running');
      } finally {
        this.#rolling = undefined;
      }
    })();
    return this.#rolling;
  }

  async #rollOnce(): Promise<boolean> {
    const aborted = (reason: string): false => {
      this.#rollout = { state: 'aborted', reason };
      return false;
    };
    // Leaders last: a job released by a replaced leader then moves into a new
    // worker, not into an old one about to be replaced too (once per leader).
    const leads = (slot: Slot): boolean => (slot.current?.leads ?? 0) > 0;
    const order = [...this.#slots].sort((a, b) => Number(leads(a)) - Number(leads(b)));
    let leadersTold = false;
    for (const [position, slot] of order.entries()) {
      if (this.#state !== 'running') return aborted('the supervisor is stopping');
      // No current worker: its pending restart forks the new code anyway.
      if (slot.retired || !slot.current) continue;
      const next = await this.#fork(slot, 'replacement');
      if (this.#state !== 'running') return aborted('the supervisor is stopping');
      if (!next) continue; // the slot was scaled away during beforeFork
      const ready = await next.ready;
      if (slot.replacement === next) slot.replacement = undefined;
      if (this.#state !== 'running') return aborted('the supervisor is stopping');
      if (slot.retired) continue;
      if (!ready) {
        const reason = `the replacement (pid ${next.pid}) did not become ready`;
        this.#rollout = { state: 'failed', slot: slot.index, reason };
        const error = new BellwetherError(ErrorCodes.ROLLOUT_FAILED, `rolling restart stopped at slot ${slot.index}: ${reason}; the old worker keeps serving`);
        this.#logOf(next).error({ event: 'rollout-failed', code: error.code, reason }, `${error.code}: ${error.message}`);
        this.#report(error, true);
        this.emit('rolloutFailed', slot.info(), reason);
        return false;
      }
      // Only old leaders are left: they wait for no other job from now on (another worker's
      // job, released, would move into one of them), each keeping its own until replaced.
      if (!leadersTold && leads(slot)) {
        leadersTold = true;
        for (const later of order.slice(position)) if (later.current && !later.retired) this.#tell(later.current, { bellwether: 'stopping' });
      }
      // Whatever serves the slot now (the old worker, or one forked after it crashed) retires.
      const previous = slot.current;
      slot.current = next;
      slot.settleReady(true);
      if (previous) await this.#retire(previous, true);
    }
    return true;
  }

  /** Changes the number of workers: new slots take the next indexes; removed slots are the highest and stop gracefully. */
  async scale(workers: number): Promise<void> {
    if (this.#state !== 'running') {
      throw this.#state === 'latent'
        ? new BellwetherError(ErrorCodes.INVALID_OPTION, 'Supervisor is not started: call start() first')
        : new BellwetherError(ErrorCodes.CLOSED, 'Supervisor is stopping');
    }
    if (!Number.isInteger(workers) || workers < 1 || workers > 1024) {
      throw new BellwetherError(ErrorCodes.INVALID_OPTION, `workers must be an integer from 1 to 1024, got ${workers}`);
    }
    const forks: Promise<boolean>[] = [];
    while (this.#slots.length < workers) {
      const slot = new Slot(this.#slots.length);
      this.#slots.push(slot);
      forks.push(this.#forkReady(slot));
    }
    const removed = this.#slots.splice(workers);
    const retiring: Promise<void>[] = [];
    for (const slot of removed) {
      slot.retired = true;
      clearTimeout(slot.restartTimer);
      slot.settleReady(false);
      for (const handle of [slot.current, slot.replacement]) if (handle) retiring.push(this.#retire(handle, true));
    }
    if (forks.length > 0) this.#exhausted = false;
    // Scaling away the slots still serving leaves only given-up ones.
    this.#checkExhausted();
    await Promise.all([...forks, ...retiring]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // ---- workers ----

  /** Forks the slot's worker; resolves true once it is ready, false if it exits or times out first. */
  async #forkReady(slot: Slot): Promise<boolean> {
    const ready = slot.whenReady();
    // Not forked: stopping or scaled away (false), or a rolling restart's ready replacement took the slot over.
    if (!(await this.#fork(slot, 'current'))) slot.settleReady(slot.current?.state === 'ready');
    return ready;
  }

  /**
   * Forks a worker for the slot, as its current worker or as the replacement
   * of a rolling restart. Resolves once forked (undefined if the slot or the
   * supervisor went away during `beforeFork`).
   */
  async #fork(slot: Slot, role: 'current' | 'replacement', restart = false): Promise<WorkerHandle | undefined> {
    // Whoever forks for the slot now, a pending restart must not fork a second worker.
    clearTimeout(slot.restartTimer);
    slot.restartTimer = undefined;
    await this.#hook('beforeFork', slot, () => this.#options.beforeFork?.(slot.info()));
    if (this.#state !== 'running' || slot.retired) return undefined;
    // During the hook a rolling restart's replacement may have taken the slot over.
    if (role === 'current' && slot.current) return undefined;
    const env: Record<string, string> = {
      ...this.#options.env,
      [ENV.index]: String(slot.index),
      [ENV.primaryPid]: String(process.pid),
      [ENV.heartbeat]: String(this.#options.heartbeat),
      [ENV.killTimeout]: String(this.#options.killTimeout),
      [ENV.entry]: this.#options.exec,
    };
    const [firstZk] = this.#options.zk;
    if (firstZk) Object.assign(env, zkSettingsEnv(firstZk));
    // The primary's sessions hold their events while the fork happens (seed 000).
    for (const zk of this.#options.zk) zk.pause();
    let worker: Worker;
    try {
      worker = cluster.fork(env);
    } finally {
      for (const zk of this.#options.zk) zk.resume();
    }
    // Before anything else can run in the primary: the worker's session asks as it starts.
    if (firstZk) answerZkAuth(worker, firstZk);
    const handle = new WorkerHandle(worker, slot);
    if (restart) this.#logOf(handle).info({ event: 'worker-restart', restarts: slot.restarts }, `worker ${slot.index} restarted (pid ${handle.pid})`);
    this.#workers.add(handle);
    if (role === 'current') slot.current = handle;
    else slot.replacement = handle;
    // Listening before any hook runs: a fast worker's readiness or exit must not be missed.
    this.#listen(handle);
    await this.#hook('afterFork', slot, () => this.#options.afterFork?.(slot.info(handle)));
    return handle;
  }

  #listen(handle: WorkerHandle): void {
    const { worker, slot } = handle;
    const markReady = (): void => {
      if (!handle.markReady()) return;
      this.#logOf(handle).debug({ event: 'worker-ready' }, `worker ${slot.index} ready (pid ${handle.pid})`);
      if (slot.current === handle) slot.settleReady(true);
      this.emit('ready', slot.info(handle));
    };
    // A send to a worker whose channel just closed is reported here, not thrown: never crash the primary.
    worker.on('error', () => {});
    worker.on('message', (message: unknown) => {
      if (isMetricsMessage(message)) return this.#metrics.onMessage({ worker, index: slot.index }, message, (id) => void this.#answerMetrics(worker, id));
      if (isFleetMessage(message)) return this.#ballots?.onMessage(worker, message, this.#state === 'running');
      if (!isWorkerMessage(message)) return;
      if (!handle.heard) {
        handle.heard = true;
        // First heard while every worker is stopping (it was booting): it stops contending too.
        if (this.#state === 'stopping') this.#tell(handle, { bellwether: 'stopping' });
        if (handle.stopPending) this.#sendShutdown(handle);
      }
      if (message.bellwether === 'ready') markReady();
      else if (message.bellwether === 'defer-ready') handle.readyDeferred = true;
      else if (message.bellwether === 'stopping-ack') handle.markStoppingAcked();
      else {
        handle.lastHeartbeat = performance.now();
        handle.leads = message.leads ?? 0;
        // 0 clears a silent mark; a reported unhealthy code stays the highest seen.
        if (message.code > 0) handle.code = Math.max(handle.code, message.code);
        else if (handle.code < 0) handle.code = 0;
      }
    });
    // Cluster's message comes on the same channel as the worker's: a 'defer-ready' sent before listen() is seen first.
    worker.on('listening', () => void (handle.readyDeferred || markReady()));
    worker.once('exit', (code: number | null, signal: string | null) => this.#onExit(handle, code, signal));
  }

  /** 'exhausted' once when no slot is left that serves or will be forked again. */
  #checkExhausted(): void {
    if (this.#exhausted || this.#state !== 'running' || !this.#slots.every((s) => s.state === 'given-up')) return;
    this.#exhausted = true;
    this.emit('exhausted', this.status());
  }

  #onExit(handle: WorkerHandle, code: number | null, signal: string | null): void {
    this.#workers.delete(handle);
    this.#metrics.forget(handle.worker);
    this.#ballots?.forget(handle.worker, this.#state === 'running');
    handle.markExited();
    const { slot } = handle;
    if (slot.replacement === handle) {
      // A rolling restart's new worker died before taking over: the rollout sees it and stops.
      slot.replacement = undefined;
      this.#logExit(handle, code, signal, false, true);
      this.emit('exit', slot.info(handle), { code, signal, replaced: false });
      return;
    }
    if (slot.current !== handle) return; // retired: rolled over or scaled away
    slot.current = undefined;
    slot.lastCode = handle.code;
    const replace = this.#state === 'running' && !slot.retired;
    const now = performance.now();
    slot.exits = [...slot.exits.filter((t) => now - t < this.#options.restart.window), now];
    const givenUp = replace && slot.exits.length > this.#options.restart.maxRestarts;
    slot.idle = givenUp ? 'given-up' : 'exited';
    void this.#hook('afterWorkerExit', slot, () => this.#options.afterWorkerExit?.(slot.info(), { code, signal }));
    this.#logExit(handle, code, signal, replace && !givenUp, replace);
    this.emit('exit', slot.info(), { code, signal, replaced: replace && !givenUp });
    if (givenUp || !replace) slot.settleReady(false);
    if (givenUp) {
      const { window } = this.#options.restart;
      const error = new BellwetherError(
        ErrorCodes.CRASH_LOOP,
        `worker slot ${slot.index} exited ${slot.exits.length} times within ${window} ms; given up (the other workers keep serving)`,
      );
      this.#logOf(handle).error({ event: 'crash-loop', code: error.code, exits: slot.exits.length, window }, `${error.code}: ${error.message}`);
      this.#report(error, true);
      this.#checkExhausted();
      return;
    }
    if (!replace) return;
    const { initialDelay, maxDelay } = this.#options.restart;
    const delay = Math.min(maxDelay, initialDelay * 2 ** (slot.exits.length - 1));
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      // A rolling restart may have given the slot a worker meanwhile.
      if (slot.current || slot.retired || this.#state !== 'running') return;
      slot.restarts += 1;
      // A counter of the primary's: not served from a text collected before it grew.
      this.#metrics.restarted();
      void this.#fork(slot, 'current', true);
    }, delay);
  }

  /** A worker's exit: a warning when it was not asked to stop (a crash, a liveness kill, a replacement that died). */
  #logExit(handle: WorkerHandle, code: number | null, signal: string | null, replaced: boolean, unexpected: boolean): void {
    const fields = { event: 'worker-exit', exitCode: code, signal, replaced };
    this.#logOf(handle)[unexpected ? 'warn' : 'info'](fields, `worker ${handle.slot.index} exited (${signal ?? code})${replaced ? ', replacing it' : ''}`);
  }

  /** The supervisor's logger for lines about one worker (`workerPid`: pino's own lines carry this process's `pid`). */
  #logOf(handle: WorkerHandle): Logger {
    return this.#options.logger.child({ worker: handle.slot.index, workerPid: handle.pid });
  }

  /** Silent, unhealthy and never-ready workers: SIGTERM, then SIGKILL after killTimeout. */
  #checkLiveness(): void {
    const now = performance.now();
    for (const handle of this.#workers) {
      if (handle.killing || handle.state === 'stopping' || handle.slot.retired) continue;
      let reason: KillReason | undefined;
      if (handle.state === 'starting') {
        // A rolling restart's replacement too: one that never boots ends the rollout.
        if (now - handle.forkedAt > this.#options.bootTimeout) reason = 'boot-timeout';
      } else if (now - handle.lastHeartbeat > this.#options.timeout) {
        handle.code = -1;
        reason = 'silent';
      } else if (handle.code > 0) reason = 'unhealthy';
      if (reason) this.#kill(handle, reason);
    }
  }

  #kill(handle: WorkerHandle, reason: KillReason): void {
    handle.killing = true;
    this.#logOf(handle).warn({ event: 'worker-kill', reason }, `killing worker ${handle.slot.index} (pid ${handle.pid}): ${reason}`);
    this.emit('kill', handle.slot.info(handle), reason);
    handle.worker.process.kill('SIGTERM');
    handle.killIn(this.#options.killTimeout);
  }

  /** Tells every worker that can hear it that all are stopping; waits for their answers (bounded: a worker may be blocked). */
  async #announceStopping(): Promise<void> {
    const listening = [...this.#workers].filter((handle) => handle.heard && handle.worker.isConnected() && !handle.worker.isDead());
    for (const handle of listening) this.#tell(handle, { bellwether: 'stopping' });
    await settledWithin(STOPPING_ACK_MS, Promise.all(listening.map((handle) => Promise.race([handle.stoppingAcked, handle.exited]))));
  }


  /** Stops one worker: gracefully (shutdown message, SIGKILL after shutdownTimeout) or at once. Resolves when it exited. */
  #retire(handle: WorkerHandle, graceful: boolean): Promise<void> {
    if (handle.worker.isDead()) return Promise.resolve();
    if (!graceful) {
      handle.worker.process.kill('SIGKILL');
      return handle.exited;
    }
    if (handle.state === 'stopping') return handle.exited; // already asked
    handle.state = 'stopping';
    // A liveness kill already under way keeps its (shorter) SIGKILL timer.
    handle.killIn(this.#options.shutdownTimeout);
    // A worker that has not spoken yet may not listen yet: the request waits for its first message.
    if (handle.heard) this.#sendShutdown(handle);
    else handle.stopPending = true;
    return handle.exited;
  }

  #sendShutdown(handle: WorkerHandle): void {
    handle.stopPending = false;
    // Sent late to a worker not heard from at first: it has what is left until the SIGKILL.
    this.#tell(handle, { bellwether: 'shutdown', within: Math.max(0, Math.round(handle.killAt - performance.now())) });
  }

  /** A worker that already disconnected is leaving (its SIGKILL timer, its exit still apply): nothing to tell it. */
  #tell(handle: WorkerHandle, message: PrimaryMessage): void {
    if (!handle.worker.isConnected()) return;
    try {
      handle.worker.send(message, undefined, () => {});
    } catch {
      // closed in between
    }
  }

  // ---- metrics: one scrape of any worker shows the whole cluster ----

  async #answerMetrics(requester: Worker, id: string): Promise<void> {
    // null (no prom-client, or the collection failed, which ClusterMetrics logs once): the requester answers with its own series.
    const body = await this.#metrics.scrape(() => this.status());
    try {
      requester.send({ bellwether: 'metrics-response', id, body } satisfies MetricsMessage);
    } catch {
      // the requester went away
    }
  }

  /**
   * Like a worker's orphan fencing, one level up: Linux re-parents an orphan,
   * so a changed ppid means whoever started this primary (a test, another
   * supervisor, a shell script) is gone, and nobody is left to stop it.
   */
  #watchParent(parent: number): void {
    const check = (): void => {
      const ppid = process.ppid;
      if (ppid === parent || this.#state !== 'running') return;
      clearInterval(this.#parentCheck);
      this.emit('orphaned', { parent, ppid });
      void this.stop();
    };
    this.#parentCheck = setInterval(check, PARENT_CHECK_MS);
    this.#parentCheck.unref();
    // The parent may be gone already (between construction and start()).
    check();
  }

  // ---- signals ----

  #installSignals(): void {
    let stops = 0;
    const onStop = (): void => {
      stops += 1;
      // The first stops gracefully, a second one at once.
      void this.stop({ graceful: stops === 1 });
    };
    const handlers: [NodeJS.Signals, () => void][] = [
      ['SIGTERM', onStop],
      ['SIGINT', onStop],
      ['SIGHUP', () => void this.rollingRestart()],
      ['SIGTTIN', () => void this.scale(this.#slots.length + 1).catch((err: BellwetherError) => this.#report(err))],
      ['SIGTTOU', () => void (this.#slots.length > 1 ? this.scale(this.#slots.length - 1) : undefined)],
    ];
    for (const [signal, handler] of handlers) {
      process.on(signal, handler);
      this.#signalHandlers.push([signal, handler]);
    }
  }

  #removeSignals(): void {
    for (const [signal, handler] of this.#signalHandlers.splice(0)) process.off(signal, handler);
  }

  async #hook(name: string, slot: Slot, run: () => unknown): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.#report(callbackFailed(`${name} hook of slot ${slot.index}`, err));
    }
  }

  /** `logged`: already logged as a state change (a crash loop, a failed rollout). */
  #report(error: BellwetherError, logged = false): void {
    reportError(this, this.#options.logger, error, logged);
  }
}
