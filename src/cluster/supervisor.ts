import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { EventEmitter } from 'eventemitter3';
import { BellwetherError, ErrorCodes, callbackFailed } from '../errors.js';
import { ControlSocket } from './control-socket.js';
import { type ResolvedSupervisorOptions, type SupervisorOptions, resolveSupervisorOptions } from './options.js';
import { aggregate, loadPromClient } from '../status/metrics.js';
import { ENV, type MetricsMessage, PARENT_CHECK_MS, type PrimaryMessage, isMetricsMessage, isWorkerMessage } from './protocol.js';
import { Slot, type SlotInfo } from './slot.js';

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

/**
 * A prefork primary over node:cluster (Node and Bun): N workers with stable
 * indexes, liveness by heartbeat, restarts with backoff and a crash-loop
 * cap, graceful and quick stop, rolling restart and scaling by signal.
 */
export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly #options: ResolvedSupervisorOptions;
  readonly #slots: Slot[] = [];
  /** Workers being replaced by a rolling restart: still serving until their successor is ready. */
  readonly #retiring = new Set<Worker>();
  #state: State = 'latent';
  #liveness: NodeJS.Timeout | undefined;
  #parentCheck: NodeJS.Timeout | undefined;
  #control: ControlSocket | undefined;
  #stopped: Promise<void> | undefined;
  #rolling: Promise<void> | undefined;
  readonly #signalHandlers: [NodeJS.Signals, () => void][] = [];
  readonly #metricsPending = new Map<string, (metrics: unknown[]) => void>();

  /** Checks every option (before anything forks). */
  constructor(options: SupervisorOptions) {
    super();
    this.#options = resolveSupervisorOptions(options);
  }

  get state(): State {
    return this.#state;
  }

  /** Forks the workers; resolves once every slot has a ready worker (or a slot was given up). */
  async start(): Promise<void> {
    if (this.#state !== 'latent') throw new BellwetherError(ErrorCodes.ALREADY_STARTED, 'Supervisor was already started');
    if (!cluster.isPrimary) throw new BellwetherError(ErrorCodes.INVALID_OPTION, 'Supervisor runs in the primary process, not in a worker');
    if (this.#options.controlSocket !== false) {
      this.#control = new ControlSocket(this.#options.name, this.#options.controlSocket, () => this.status());
      await this.#control.listen();
    }
    this.#state = 'running';
    cluster.setupPrimary({ exec: BOOTSTRAP, args: this.#options.args });
    const tick = Math.max(10, Math.min(this.#options.heartbeat, 250));
    this.#liveness = setInterval(() => this.#checkLiveness(), tick);
    if (this.#options.signals) this.#installSignals();
    if (this.#options.stopWithParent) this.#watchParent();
    const ready = Array.from({ length: this.#options.workers }, (_, index) => {
      const slot = new Slot(index);
      this.#slots.push(slot);
      return this.#fork(slot);
    });
    await Promise.all(ready);
  }

  /** Per slot: index, pid, state, status code, restarts, uptime, memory. */
  status(): SlotInfo[] {
    return this.#slots.map((slot) => slot.info());
  }

  /**
   * Stops every worker. Graceful (the default): workers run their
   * onShutdown callbacks, stop accepting and finish in-flight requests; any
   * still running after `shutdownTimeout` get SIGKILL. Not graceful: SIGKILL now.
   */
  stop(options: { graceful?: boolean } = {}): Promise<void> {
    const graceful = options.graceful ?? true;
    if (!graceful) for (const worker of this.#allWorkers()) worker.process.kill('SIGKILL');
    if (this.#stopped) return this.#stopped;
    this.#state = 'stopping';
    clearInterval(this.#liveness);
    clearInterval(this.#parentCheck);
    for (const slot of this.#slots) {
      slot.retired = true;
      clearTimeout(slot.restartTimer);
    }
    this.#stopped = (async () => {
      await Promise.all(this.#allWorkers().map((worker) => this.#retire(worker, graceful)));
      await this.#control?.close();
      // Only now: until every worker is gone, a second SIGTERM must reach us (stop at once).
      this.#removeSignals();
      this.#state = 'stopped';
      this.emit('stopped');
    })();
    return this.#stopped;
  }

  /** Replaces every worker, one slot at a time: start the new one, wait until it is ready, then stop the old one gracefully. */
  rollingRestart(): Promise<void> {
    if (this.#rolling) return this.#rolling;
    this.#rolling = (async () => {
      try {
        for (const slot of [...this.#slots]) {
          if (this.#state !== 'running' || slot.retired) continue;
          const old = slot.worker;
          if (old) this.#retiring.add(old);
          const ready = await this.#fork(slot);
          if (!ready) {
            this.#report(new BellwetherError(ErrorCodes.CALLBACK_FAILED, `rolling restart: the new worker of slot ${slot.index} did not become ready; kept going`));
          }
          if (old) await this.#retire(old, true);
        }
        this.emit('restarted');
      } finally {
        this.#rolling = undefined;
      }
    })();
    return this.#rolling;
  }

  /** Changes the number of workers: new slots take the next indexes; removed slots are the highest and stop gracefully. */
  async scale(workers: number): Promise<void> {
    if (!Number.isInteger(workers) || workers < 1 || workers > 1024) {
      throw new BellwetherError(ErrorCodes.INVALID_OPTION, `workers must be an integer from 1 to 1024, got ${workers}`);
    }
    const forks: Promise<boolean>[] = [];
    while (this.#slots.length < workers) {
      const slot = new Slot(this.#slots.length);
      this.#slots.push(slot);
      forks.push(this.#fork(slot));
    }
    const removed = this.#slots.splice(workers);
    for (const slot of removed) {
      slot.retired = true;
      clearTimeout(slot.restartTimer);
    }
    await Promise.all([...forks, ...removed.map((slot) => (slot.worker ? this.#retire(slot.worker, true) : undefined))]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // ---- workers ----

  /** Forks a worker for the slot; resolves true once it is ready, false if it exits or times out first. */
  async #fork(slot: Slot): Promise<boolean> {
    await this.#hook('beforeFork', slot, () => this.#options.beforeFork?.(slot.info()));
    if (this.#state !== 'running' || slot.retired) return false;
    const env: Record<string, string> = {
      ...this.#options.env,
      [ENV.index]: String(slot.index),
      [ENV.primaryPid]: String(process.pid),
      [ENV.heartbeat]: String(this.#options.heartbeat),
      [ENV.entry]: this.#options.exec,
    };
    const [firstZk] = this.#options.zk;
    if (firstZk) env[ENV.zkSettings] = JSON.stringify(firstZk.settings());
    // The primary's sessions hold their events while the fork happens (seed 000).
    for (const zk of this.#options.zk) zk.pause();
    let worker: Worker;
    try {
      worker = cluster.fork(env);
    } finally {
      for (const zk of this.#options.zk) zk.resume();
    }
    slot.worker = worker;
    slot.state = 'starting';
    slot.code = 0;
    slot.forkedAt = performance.now();
    slot.lastHeartbeat = slot.forkedAt;
    await this.#hook('afterFork', slot, () => this.#options.afterFork?.(slot.info()));
    return new Promise<boolean>((resolve) => {
      const markReady = (): void => {
        if (slot.worker !== worker || slot.state !== 'starting') return;
        slot.state = 'ready';
        this.emit('ready', slot.info());
        resolve(true);
      };
      worker.on('message', (message: unknown) => {
        if (isMetricsMessage(message)) return this.#onMetricsMessage(worker, message);
        if (!isWorkerMessage(message) || slot.worker !== worker) return;
        if (message.bellwether === 'ready') markReady();
        else {
          slot.lastHeartbeat = performance.now();
          // 0 clears a silent mark; a reported unhealthy code stays the highest seen.
          if (message.code > 0) slot.code = Math.max(slot.code, message.code);
          else if (slot.code < 0) slot.code = 0;
        }
      });
      worker.on('listening', markReady);
      worker.once('exit', (code: number | null, signal: string | null) => {
        resolve(false);
        this.#onExit(slot, worker, code, signal);
      });
    });
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    this.#retiring.delete(worker);
    if (slot.worker !== worker) return; // an old worker of a rolling restart
    clearTimeout(slot.killing);
    slot.killing = undefined;
    slot.worker = undefined;
    const replace = this.#state === 'running' && !slot.retired;
    const now = performance.now();
    slot.exits = [...slot.exits.filter((t) => now - t < this.#options.restart.window), now];
    const givenUp = replace && slot.exits.length > this.#options.restart.maxRestarts;
    slot.state = givenUp ? 'given-up' : 'exited';
    void this.#hook('afterWorkerExit', slot, () => this.#options.afterWorkerExit?.(slot.info(), { code, signal }));
    this.emit('exit', slot.info(), { code, signal, replaced: replace && !givenUp });
    if (givenUp) {
      this.#report(
        new BellwetherError(
          ErrorCodes.CRASH_LOOP,
          `worker slot ${slot.index} exited ${slot.exits.length} times within ${this.#options.restart.window} ms; given up (the other workers keep serving)`,
        ),
      );
      if (this.#slots.every((s) => s.state === 'given-up')) this.emit('exhausted', this.status());
      return;
    }
    if (!replace) return;
    const { initialDelay, maxDelay } = this.#options.restart;
    const delay = Math.min(maxDelay, initialDelay * 2 ** (slot.exits.length - 1));
    slot.restartTimer = setTimeout(() => {
      slot.restarts += 1;
      void this.#fork(slot);
    }, delay);
  }

  /** Silent, unhealthy and never-ready workers: SIGTERM, then SIGKILL after killTimeout. */
  #checkLiveness(): void {
    const now = performance.now();
    for (const slot of this.#slots) {
      if (!slot.worker || slot.killing || slot.retired) continue;
      let reason: KillReason | undefined;
      if (slot.state === 'starting' && now - slot.forkedAt > this.#options.bootTimeout) reason = 'boot-timeout';
      else if (slot.state === 'ready' && now - slot.lastHeartbeat > this.#options.timeout) {
        slot.code = -1;
        reason = 'silent';
      } else if (slot.state === 'ready' && slot.code > 0) reason = 'unhealthy';
      if (reason) this.#kill(slot, reason);
    }
  }

  #kill(slot: Slot, reason: KillReason): void {
    const worker = slot.worker!;
    this.emit('kill', slot.info(), reason);
    worker.process.kill('SIGTERM');
    slot.killing = setTimeout(() => worker.process.kill('SIGKILL'), this.#options.killTimeout);
  }

  /** Stops one worker: gracefully (shutdown message, SIGKILL after shutdownTimeout) or at once. Resolves when it exited. */
  #retire(worker: Worker, graceful: boolean): Promise<void> {
    if (worker.isDead()) return Promise.resolve();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const slot = this.#slots.find((s) => s.worker === worker);
    if (slot) slot.state = 'stopping';
    if (!graceful) {
      worker.process.kill('SIGKILL');
      return exited;
    }
    try {
      worker.send({ bellwether: 'shutdown' } satisfies PrimaryMessage);
    } catch {
      // IPC already closed: the kill below still applies.
    }
    const timer = setTimeout(() => worker.process.kill('SIGKILL'), this.#options.shutdownTimeout);
    return exited.finally(() => clearTimeout(timer));
  }

  // ---- metrics: one scrape of any worker shows the whole cluster ----

  #onMetricsMessage(worker: Worker, message: MetricsMessage): void {
    if (message.bellwether === 'metrics-request') void this.#answerMetrics(worker, message.id);
    else if (message.bellwether === 'metrics-report') this.#metricsPending.get(message.id)?.(message.metrics);
  }

  async #answerMetrics(requester: Worker, id: string): Promise<void> {
    const prom = await loadPromClient();
    let body: string | null = null;
    if (prom) {
      const workers = this.#allWorkers().filter((w) => !w.isDead());
      const reports: unknown[][] = [];
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, 1000); // a busy or metrics-less worker is left out
        function finish(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#metricsPending.set(id, (metrics) => {
          reports.push(metrics);
          if (reports.length >= workers.length) finish();
        });
        for (const w of workers) {
          try {
            w.send({ bellwether: 'metrics-collect', id } satisfies MetricsMessage);
          } catch {
            // gone meanwhile
          }
        }
      });
      this.#metricsPending.delete(id);
      reports.push(await this.#primaryMetrics(prom));
      body = (await aggregate(reports))?.body ?? null;
    }
    try {
      requester.send({ bellwether: 'metrics-response', id, body } satisfies MetricsMessage);
    } catch {
      // the requester went away
    }
  }

  /** The primary's own series: restarts and status code per slot. */
  async #primaryMetrics(prom: NonNullable<Awaited<ReturnType<typeof loadPromClient>>>): Promise<unknown[]> {
    const registry = new prom.Registry();
    const restarts = new prom.Gauge({ name: 'bellwether_worker_restarts', help: 'Times the worker of a slot was replaced', labelNames: ['worker'], registers: [registry] });
    const code = new prom.Gauge({
      name: 'bellwether_worker_status_code',
      help: 'Last status code of a slot: 0 healthy, > 0 unhealthy code, -1 silent',
      labelNames: ['worker'],
      registers: [registry],
    });
    for (const slot of this.status()) {
      restarts.set({ worker: String(slot.index) }, slot.restarts);
      code.set({ worker: String(slot.index) }, slot.code);
    }
    return (await registry.getMetricsAsJSON()) as unknown[];
  }

  #allWorkers(): Worker[] {
    const workers = new Set<Worker>(this.#retiring);
    for (const slot of this.#slots) if (slot.worker) workers.add(slot.worker);
    return [...workers];
  }

  /**
   * Like a worker's orphan fencing, one level up: Linux re-parents an orphan,
   * so a changed ppid means whoever started this primary (a test, another
   * supervisor, a shell script) is gone, and nobody is left to stop it.
   */
  #watchParent(): void {
    const parent = process.ppid;
    this.#parentCheck = setInterval(() => {
      const ppid = process.ppid;
      if (ppid === parent || this.#state !== 'running') return;
      clearInterval(this.#parentCheck);
      this.emit('orphaned', { parent, ppid });
      void this.stop();
    }, PARENT_CHECK_MS);
    this.#parentCheck.unref();
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

  #report(error: BellwetherError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else process.emitWarning(error);
  }
}
