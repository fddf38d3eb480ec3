import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import { type MetricsMessage, isMetricsMessage } from '../cluster/protocol.js';
import { BellwetherError, ErrorCodes } from '../errors.js';
import type { RunRecord, Singleton } from '../singleton/singleton.js';
import { checkObject, checkKnownKeys, invalidOption } from '../validate.js';
import { onWorkerStopping, worker } from '../worker/worker.js';
import { ZkSession, type ZkSessionState } from '../zk/session.js';
import { aggregate, loadPromClient } from './metrics.js';

export interface StatusBoardOptions {
  /** Singletons this process contends for; `start()` starts them. */
  singletons?: Singleton[];
  /** The ZooKeeper session they use; `start()` starts it if it is not started yet. */
  zk?: ZkSession;
  /** Prometheus metrics (needs the optional peer dependency prom-client). Default false. */
  metrics?: boolean;
  /**
   * What `ready` needs once the app serves: `'serving'` (default) only that;
   * `'serving+zk'` also the ZooKeeper session connected, so every worker of the
   * fleet turns unready during a ZooKeeper outage.
   */
  readiness?: Readiness;
}

export type Readiness = 'serving' | 'serving+zk';
const READINESS: readonly Readiness[] = ['serving', 'serving+zk'];

export interface BellwetherStatus {
  worker: { index: number | undefined; pid: number; supervised: boolean; ready: boolean };
  singletons: {
    name: string;
    state: string;
    leader: boolean;
    token: number | undefined;
    leaderChanges: number;
    /** The last run of its job in this process, if any: when, how long, how it ended. */
    lastRun: RunRecord | undefined;
    /** Runs started in this process, and how many of them failed. */
    runs: number;
    runFailures: number;
  }[];
  zk: { state: ZkSessionState; sessionId: string | undefined; timeout: number | undefined; expiries: number } | null;
}

const SESSION_STATES: ZkSessionState[] = ['latent', 'connecting', 'connected', 'suspended', 'closed'];

/**
 * What the adapters serve: liveness, readiness, a JSON status of this worker
 * (its singletons, leadership, fencing tokens, session) and Prometheus
 * metrics, aggregated over the whole cluster by the primary when supervised.
 */
export class StatusBoard {
  readonly #singletons: Singleton[];
  readonly #zk: ZkSession | undefined;
  readonly #metricsEnabled: boolean;
  readonly #readiness: Readiness;
  readonly #leaderChanges = new Map<Singleton, number>();
  readonly #cleanup: (() => void)[] = [];
  #expiries = 0;
  #ready = false;
  #closed = false;
  #startedZk = false;
  /** Only what start() started is closed by close(). */
  readonly #startedSingletons: Singleton[] = [];
  /** start() is under way. */
  #starting = false;
  /** close() came while start() was under way. */
  #cancelled = false;
  #started: Promise<void> | undefined;
  #registry: Registry | undefined;
  #metricsSetUp: Promise<void> | undefined;
  /** The primary was told this worker serves metrics (and not yet that it stopped). */
  #servingMetrics = false;

  constructor(options: StatusBoardOptions = {}) {
    const given = checkObject(options, 'bellwether adapter options');
    checkKnownKeys(given, ['singletons', 'zk', 'metrics', 'readiness'], 'StatusBoard');
    const singletons = given['singletons'] ?? [];
    if (!Array.isArray(singletons) || !singletons.every((s) => typeof (s as Singleton)?.start === 'function' && typeof (s as Singleton)?.name === 'string')) {
      throw invalidOption('singletons', 'an array of singleton() objects', singletons);
    }
    if (given['zk'] !== undefined && !(given['zk'] instanceof ZkSession)) throw invalidOption('zk', 'a ZkSession', given['zk']);
    const metrics = given['metrics'] ?? false;
    if (typeof metrics !== 'boolean') throw invalidOption('metrics', 'a boolean', metrics);
    this.#singletons = singletons as Singleton[];
    this.#zk = given['zk'] as ZkSession | undefined;
    this.#metricsEnabled = metrics;
    const readiness = given['readiness'] ?? 'serving';
    if (!READINESS.includes(readiness as Readiness)) throw invalidOption('readiness', `one of ${READINESS.map((r) => `'${r}'`).join(', ')}`, readiness);
    this.#readiness = readiness as Readiness;
  }

  /**
   * Starts the session and the singletons that are not started yet, and
   * begins tracking them; close() closes only those. If starting fails,
   * what was started is closed again before the error is thrown.
   */
  start(): Promise<void> {
    if (!this.#started) this.#starting = true;
    this.#started ??= this.#start().finally(() => (this.#starting = false)).catch(async (err: unknown) => {
      // The metrics set-up runs beside the rest: let it finish first, or what it adds would outlive close().
      await this.#metricsSetUp?.catch(() => {});
      await this.close().catch(() => {});
      throw err;
    });
    return this.#started;
  }

  async #start(): Promise<void> {
    // close() before or while starting (a stop during a slow connect): start nothing more; what started is closed again.
    const notClosed = (): void => {
      if (this.#closed) throw new BellwetherError(ErrorCodes.CLOSED, 'the status board was closed while starting');
    };
    notClosed();
    // A stop of this worker while it starts (a slow ZooKeeper connect) cancels the start: the stop
    // waits for the entry script to load, and the script waits for this. Already begun: at once.
    const unsubscribe = onWorkerStopping(() => void this.close());
    try {
      notClosed();
      await this.#startParts(notClosed);
    } finally {
      unsubscribe();
    }
  }

  async #startParts(notClosed: () => void): Promise<void> {
    // First: a request for /metrics may come as soon as the app listens, before the session is up.
    this.#setUpMetricsOnce();
    for (const job of this.#singletons) {
      this.#leaderChanges.set(job, 0);
      const onElected = (): void => {
        this.#leaderChanges.set(job, (this.#leaderChanges.get(job) ?? 0) + 1);
        this.#tellPrimary({ bellwether: 'metrics-event', event: 'elected', singleton: job.name });
      };
      job.on('elected', onElected);
      this.#cleanup.push(() => job.off('elected', onElected));
      const onRan = ({ outcome }: RunRecord): void => this.#tellPrimary({ bellwether: 'metrics-event', event: 'ran', singleton: job.name, failed: outcome === 'failed' });
      job.on('ran', onRan);
      this.#cleanup.push(() => job.off('ran', onRan));
    }
    if (this.#zk) {
      const onExpired = (): void => {
        this.#expiries += 1;
        this.#tellPrimary({ bellwether: 'metrics-event', event: 'expired' });
      };
      this.#zk.on('expired', onExpired);
      this.#cleanup.push(() => this.#zk?.off('expired', onExpired));
      if (this.#zk.state === 'latent') {
        this.#startedZk = true;
        await this.#zk.start();
      }
    }
    for (const job of this.#singletons) {
      notClosed();
      if (job.state !== 'latent') continue;
      await job.start();
      this.#startedSingletons.push(job);
    }
    await this.#metricsSetUp;
    notClosed();
  }

  /**
   * close() came while start() was under way (the app's close, or this
   * worker's stop during a slow ZooKeeper connect): start() rejects with
   * BW_ERR_CLOSED, and that is no failure of the app.
   */
  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** The app serves: readiness can turn true, and the supervisor is told. */
  markReady(): void {
    this.#ready = true;
    worker.ready();
  }

  /** The process answers (what /healthz reports). */
  get live(): boolean {
    return true;
  }

  /** Ready: marked ready, not closing, and with `readiness: 'serving+zk'` the session connected. */
  get ready(): boolean {
    const zkUp = this.#readiness === 'serving' || !this.#zk || this.#zk.state === 'connected';
    return this.#ready && !this.#closed && zkUp;
  }

  snapshot(): BellwetherStatus {
    return {
      worker: { index: worker.index, pid: process.pid, supervised: worker.isSupervised, ready: this.ready },
      singletons: this.#singletons.map((job) => ({
        name: job.name,
        state: job.state,
        leader: job.isLeader,
        token: job.token,
        leaderChanges: this.#leaderChanges.get(job) ?? 0,
        lastRun: job.lastRun,
        runs: job.runs,
        runFailures: job.runFailures,
      })),
      zk: this.#zk
        ? { state: this.#zk.state, sessionId: this.#zk.sessionId, timeout: this.#zk.timeout, expiries: this.#expiries }
        : null,
    };
  }

  /** Prometheus text: the whole cluster when supervised (one scrape shows every worker), else this process. */
  async metrics(): Promise<{ contentType: string; body: string } | undefined> {
    // A scrape may come before start() (Express serves as soon as it listens): the registry comes first.
    // One that comes while prom-client is still loading waits for it (not "unavailable").
    await this.#setUpMetricsOnce()?.catch(() => undefined);
    if (!this.#metricsEnabled || !this.#registry) return undefined;
    if (!worker.isSupervised) return aggregate([await this.#collect()]);
    const id = randomUUID();
    const body = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => done(null), 3000);
      const done = (value: string | null): void => {
        clearTimeout(timer);
        process.off('message', onMessage);
        resolve(value);
      };
      const onMessage = (message: unknown): void => {
        if (isMetricsMessage(message) && message.bellwether === 'metrics-response' && message.id === id) done(message.body);
      };
      process.on('message', onMessage);
      this.#tellPrimary({ bellwether: 'metrics-request', id });
    });
    // No answer from the primary (or it has no prom-client): this worker's own.
    if (body === null) return aggregate([await this.#collect()]);
    return { contentType: this.#registry.contentType, body };
  }

  /** Closes what start() started; a start still under way is cancelled (it rejects with BW_ERR_CLOSED). */
  async close(): Promise<void> {
    if (this.#starting) this.#cancelled = true;
    this.#closed = true;
    // A scrape no longer waits for this worker.
    if (this.#servingMetrics) this.#tellPrimary({ bellwether: 'metrics-off' });
    this.#servingMetrics = false;
    for (const undo of this.#cleanup.splice(0)) undo();
    await Promise.all(this.#startedSingletons.map((job) => job.close()));
    if (this.#startedZk) await this.#zk?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * This process's series, as prom-client JSON (labelled with the worker
   * index and pid). For the primary without counters: it keeps its own per
   * slot, which outlive this process.
   */
  async #collect(forPrimary = false): Promise<unknown[]> {
    const metrics = (await this.#registry!.getMetricsAsJSON()) as { type?: unknown }[];
    return forPrimary ? metrics.filter((metric) => metric.type !== 'counter') : metrics;
  }

  /** A metrics message to the supervisor's primary: only when supervised with metrics on; a closed channel is no error. */
  #tellPrimary(message: MetricsMessage): void {
    if (!this.#metricsEnabled || !worker.isSupervised || !process.connected) return;
    try {
      // With a callback, a closed channel is reported there instead of as an 'error' event.
      process.send?.(message, undefined, undefined, () => {});
    } catch {
      // channel closed: the primary aggregates without us
    }
  }

  /** The registry, made once: by start() or by the first scrape, whichever comes first. */
  #setUpMetricsOnce(): Promise<void> | undefined {
    if (!this.#metricsEnabled) return undefined;
    if (!this.#metricsSetUp) {
      this.#metricsSetUp = this.#setUpMetrics();
      // Awaited by metrics(), start() or its failure path: not an unhandled rejection meanwhile.
      this.#metricsSetUp.catch(() => {});
    }
    return this.#metricsSetUp;
  }

  async #setUpMetrics(): Promise<void> {
    const prom = await loadPromClient();
    if (!prom) {
      process.emitWarning(new BellwetherError(ErrorCodes.UNSUPPORTED, 'metrics: true needs the optional dependency prom-client (npm install prom-client)'));
      return;
    }
    // Closed before the first scrape or start() got here: nothing to set up that would outlive close().
    if (this.#closed) return;
    const registry = new prom.Registry();
    // pid too: during a rolling restart two workers share an index, and same-label gauges would be summed.
    registry.setDefaultLabels({ worker: String(worker.index ?? 'standalone'), pid: String(process.pid) });
    const board = this;
    new prom.Gauge({
      name: 'bellwether_singleton_leader',
      help: '1 while this worker leads the singleton',
      labelNames: ['singleton'],
      registers: [registry],
      collect() {
        for (const s of board.snapshot().singletons) this.set({ singleton: s.name }, s.leader ? 1 : 0);
      },
    });
    // Under the supervisor these counters come from the primary (per slot, across restarts); this process's own are for a scrape without it.
    new prom.Counter({
      name: 'bellwether_singleton_leader_changes_total',
      help: 'Times this worker was elected leader of the singleton',
      labelNames: ['singleton'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of board.snapshot().singletons) this.inc({ singleton: s.name }, s.leaderChanges);
      },
    });
    new prom.Counter({
      name: 'bellwether_singleton_runs_total',
      help: 'Runs of the singleton\'s job (run, or its task) in this worker',
      labelNames: ['singleton'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of board.snapshot().singletons) this.inc({ singleton: s.name }, s.runs);
      },
    });
    new prom.Counter({
      name: 'bellwether_singleton_run_failures_total',
      help: 'Runs of the singleton\'s job in this worker that failed (threw, or their thread crashed)',
      labelNames: ['singleton'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of board.snapshot().singletons) this.inc({ singleton: s.name }, s.runFailures);
      },
    });
    new prom.Gauge({
      name: 'bellwether_singleton_last_run_seconds',
      help: 'Duration of the last settled run of the singleton\'s job in this worker',
      labelNames: ['singleton'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of board.snapshot().singletons) {
          if (s.lastRun?.durationMs !== undefined) this.set({ singleton: s.name }, s.lastRun.durationMs / 1000);
        }
      },
    });
    if (this.#zk) {
      new prom.Gauge({
        name: 'bellwether_zk_session_state',
        help: '1 for the current state of the ZooKeeper session',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          const state = board.snapshot().zk?.state;
          for (const s of SESSION_STATES) this.set({ state: s }, s === state ? 1 : 0);
        },
      });
      new prom.Counter({
        name: 'bellwether_zk_session_expiries_total',
        help: 'ZooKeeper session expiries seen by this worker',
        registers: [registry],
        collect() {
          this.reset();
          this.inc(board.snapshot().zk?.expiries ?? 0);
        },
      });
    }
    this.#registry = registry;
    if (worker.isSupervised) {
      // The primary collects every worker's series for one scrape.
      const onCollect = (message: unknown): void => {
        if (!isMetricsMessage(message) || message.bellwether !== 'metrics-collect') return;
        void this.#collect(true).then((metrics) => this.#tellPrimary({ bellwether: 'metrics-report', id: message.id, metrics }));
      };
      process.on('message', onCollect);
      this.#cleanup.push(() => process.off('message', onCollect));
      this.#servingMetrics = true;
      this.#tellPrimary({ bellwether: 'metrics-on', singletons: this.#singletons.map((job) => job.name), zk: this.#zk !== undefined });
    }
  }
}
