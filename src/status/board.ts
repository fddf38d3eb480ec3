import { randomUUID } from 'node:crypto';
import { type MetricsMessage, isMetricsMessage } from '../cluster/protocol.js';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { type Logger, checkLogger } from '../log/logger.js';
import type { DemotionReason, RunRecord, Singleton, SingletonEvents } from '../singleton/singleton.js';
import { checkObject, checkKnownKeys, invalidOption } from '../validate.js';
import { sendToPrimary } from '../worker/send-to-primary.js';
import { onWorkerStopping, worker } from '../worker/worker.js';
import { ZkSession, type ZkSessionState } from '../zk/session.js';
import { aggregate, loadPromClient } from './metrics.js';
import { claim, release, untoldOfSession, untoldOfSingleton } from './process-counts.js';
import { WorkerSeries } from './worker-series.js';

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
  /** A logger for the singletons and the session that were given none of their own (set as start() begins). */
  logger?: Logger;
}

/** A board's request for the cluster's metrics text: `answered` settles `body`. */
interface PrimaryRequest {
  readonly id: string;
  readonly answered: (body: string | null) => void;
  readonly body: Promise<string | null>;
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
    /** The singleton's `fence` while leader, as a decimal string (JSON has no bigint). */
    fence: string | undefined;
    leaderChanges: number;
    /** Terms that ended in this process, by reason. */
    stepDowns: Record<DemotionReason, number>;
    /** The last run of its job in this process, if any: when, how long, how it ended. */
    lastRun: RunRecord | undefined;
    /** Runs started in this process, and how many of them failed. */
    runs: number;
    runFailures: number;
  }[];
  zk: { state: ZkSessionState; sessionId: string | undefined; timeout: number | undefined; expiries: number; suspensions: number } | null;
}

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
  readonly #logger: Logger | undefined;
  readonly #cleanup: (() => void)[] = [];
  /** This board's name in its messages to the primary: a worker may have more than one. */
  readonly #id = randomUUID();
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
  #series: WorkerSeries | undefined;
  #metricsSetUp: Promise<void> | undefined;
  /** The primary was told this board serves metrics (and not yet that it stopped). */
  #servingMetrics = false;
  /** The request to the primary under way: every scrape that comes meanwhile shares its answer. */
  #asking: PrimaryRequest | undefined;

  constructor(options: StatusBoardOptions = {}) {
    const given = checkObject(options, 'bellwether adapter options');
    checkKnownKeys(given, ['singletons', 'zk', 'metrics', 'readiness', 'logger'], 'StatusBoard');
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
    this.#logger = checkLogger(given['logger']);
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
    // A stop of this worker while it starts (a slow ZooKeeper connect) cancels the start: the stop
    // waits for the entry script to load, and the script waits for this. Already begun: at once.
    const unsubscribe = onWorkerStopping(() => void this.close());
    try {
      // Closed before (or, by a stop already begun, just now): start nothing.
      notClosed();
      await this.#startParts(notClosed);
    } finally {
      unsubscribe();
    }
  }

  async #startParts(notClosed: () => void): Promise<void> {
    if (this.#logger) for (const part of [...this.#singletons, ...(this.#zk ? [this.#zk] : [])]) part.adoptLogger(this.#logger);
    // First: a request for /metrics may come as soon as the app listens, before the session is up.
    this.#setUpMetricsOnce();
    // The primary keeps the counters: it is told of every increase, from what was counted before this board on.
    for (const job of this.#singletons) {
      const tell = (): void => this.#tellCounts(job);
      // A handover gap measured in this process (its own term right before): observed from this board on.
      const elected: SingletonEvents['elected'] = ({ handoverGapMs }) => {
        if (handoverGapMs !== undefined) this.#series?.observeGap(job.name, handoverGapMs / 1000);
        tell();
      };
      tell();
      job.on('elected', elected);
      job.on('demoted', tell);
      job.on('ran', tell);
      this.#cleanup.push(() => {
        job.off('elected', elected);
        job.off('demoted', tell);
        job.off('ran', tell);
      });
    }
    if (this.#zk) {
      const zk = this.#zk;
      const tell = (): void => this.#tellSession(zk);
      tell();
      zk.on('expired', tell);
      zk.on('suspended', tell);
      this.#cleanup.push(() => {
        zk.off('expired', tell);
        zk.off('suspended', tell);
      });
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
        fence: job.fence?.toString(),
        leaderChanges: job.elections,
        stepDowns: job.stepDowns,
        lastRun: job.lastRun,
        runs: job.runs,
        runFailures: job.runFailures,
      })),
      zk: this.#zk
        ? { state: this.#zk.state, sessionId: this.#zk.sessionId, timeout: this.#zk.timeout, expiries: this.#zk.expiries, suspensions: this.#zk.suspensions }
        : null,
    };
  }

  /** Prometheus text: the whole cluster when supervised (one scrape shows every worker), else this process. */
  async metrics(): Promise<{ contentType: string; body: string } | undefined> {
    // A scrape may come before start() (Express serves as soon as it listens): the registry comes first.
    // One that comes while prom-client is still loading waits for it (not "unavailable").
    await this.#setUpMetricsOnce()?.catch(() => undefined);
    if (!this.#metricsEnabled || !this.#series) return undefined;
    // Closed: the primary no longer counts this board, and its answer might find no listener.
    if (!worker.isSupervised || this.#closed) return aggregate([await this.#collect()]);
    const body = await (this.#asking ??= this.#askPrimary()).body;
    // No answer from the primary (or it has no prom-client): this worker's own.
    if (body === null) return aggregate([await this.#collect()]);
    return { contentType: this.#series.registry.contentType, body };
  }

  /** Asks the primary for the cluster's text; null if no answer comes within 3 s. */
  #askPrimary(): PrimaryRequest {
    const id = randomUUID();
    let answered!: (body: string | null) => void;
    const body = new Promise<string | null>((resolve) => {
      // Unref'd: a request under way does not keep a worker alive that is done otherwise.
      const timer = setTimeout(() => answered(null), 3000).unref();
      answered = (value) => {
        clearTimeout(timer);
        if (this.#asking?.id === id) this.#asking = undefined;
        resolve(value);
      };
    });
    this.#tellPrimary({ bellwether: 'metrics-request', id });
    return { id, answered, body };
  }

  /** Closes what start() started; a start still under way is cancelled (it rejects with BW_ERR_CLOSED). */
  async close(): Promise<void> {
    if (this.#starting) this.#cancelled = true;
    this.#closed = true;
    // A scrape no longer waits for this board.
    if (this.#servingMetrics) this.#tellPrimary({ bellwether: 'metrics-off', board: this.#id });
    this.#servingMetrics = false;
    for (const undo of this.#cleanup.splice(0)) undo();
    for (const shown of [...this.#singletons, ...(this.#zk ? [this.#zk] : [])]) release(shown, this);
    await Promise.all(this.#startedSingletons.map((job) => job.close()));
    // Their last step-down ('closed'), while the channel to the primary is still open.
    for (const job of this.#startedSingletons) this.#tellCounts(job);
    if (this.#startedZk) await this.#zk?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * This process's series, as prom-client JSON (labelled with the worker index and pid). For the
   * primary, which sums same-label series: without counters, and each singleton and session shown
   * by one board of this process only. A board's own scrape shows all of its own.
   */
  #collect(forPrimary = false): Promise<unknown[]> {
    if (!forPrimary) return this.#series!.collect(this.#singletons, this.#zk, true);
    const zk = this.#zk && claim(this.#zk, this) ? this.#zk : undefined;
    return this.#series!.collect(this.#singletons.filter((job) => claim(job, this)), zk, false);
  }

  #tellCounts(job: Singleton): void {
    if (!this.#tellsPrimary()) return;
    const counts = untoldOfSingleton(job);
    if (counts) this.#tellPrimary({ bellwether: 'metrics-event', event: 'counts', singleton: job.name, ...counts });
  }

  #tellSession(zk: ZkSession): void {
    if (!this.#tellsPrimary()) return;
    const counts = untoldOfSession(zk);
    if (counts) this.#tellPrimary({ bellwether: 'metrics-event', event: 'expiries', count: counts.expiries, suspensions: counts.suspensions });
  }

  #tellsPrimary(): boolean {
    return this.#metricsEnabled && worker.isSupervised && process.connected;
  }

  /** A metrics message to the supervisor's primary: only when supervised with metrics on; a closed channel is no error. */
  #tellPrimary(message: MetricsMessage): void {
    // A closed channel is no error: the primary aggregates without us.
    if (this.#tellsPrimary()) sendToPrimary(message);
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
    // pid too: during a rolling restart two workers share an index, and same-label gauges would be summed.
    const labels = { worker: String(worker.index ?? 'standalone'), pid: String(process.pid) };
    this.#series = new WorkerSeries(prom, labels, this.#zk !== undefined);
    if (worker.isSupervised) {
      // One listener for both: the primary collecting every board's series, and its answer to this board's request.
      const onMessage = (message: unknown): void => {
        if (!isMetricsMessage(message)) return;
        if (message.bellwether === 'metrics-collect') {
          // Closed (its listener kept for a request under way): the primary no longer counts this board.
          if (!this.#servingMetrics) return;
          // A collection of its own that fails reports nothing: the primary counts this board missing, and the
          // rejection does not end the worker.
          this.#collect(true).then(
            (metrics) => this.#tellPrimary({ bellwether: 'metrics-report', id: message.id, board: this.#id, metrics }),
            () => {},
          );
        } else if (message.bellwether === 'metrics-response' && message.id === this.#asking?.id) {
          this.#asking.answered(message.body);
        }
      };
      process.on('message', onMessage);
      // A request under way when the board closes still gets the primary's answer (the cluster's text, at once).
      this.#cleanup.push(() => {
        const stopListening = (): void => void process.off('message', onMessage);
        if (this.#asking) void this.#asking.body.then(stopListening);
        else stopListening();
      });
      this.#servingMetrics = true;
      this.#tellPrimary({ bellwether: 'metrics-on', board: this.#id, singletons: this.#singletons.map((job) => job.name), zk: this.#zk !== undefined });
    }
  }
}
