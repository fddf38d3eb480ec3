import type { Worker } from 'node:cluster';
import { aggregate, loadPromClient } from '../status/metrics.js';
import { DEMOTION_REASONS, type SessionCounts, type SingletonCounts, noSingletonCounts } from '../status/process-counts.js';
import { HandoverGaps } from './handover-gaps.js';
import type { MetricsMessage } from './protocol.js';
import type { SlotInfo } from './slot.js';

type PromClient = NonNullable<Awaited<ReturnType<typeof loadPromClient>>>;

/**
 * How long a scrape waits for the boards that serve metrics. One that has
 * not answered by then (its worker blocked, or busy beyond this) is left
 * out of that scrape and counted in `bellwether_metrics_workers{state="missing"}`.
 */
export const SCRAPE_DEADLINE_MS = 500;

/**
 * How long a collection's text answers further scrapes (from the collection's start), so that
 * a flood of scrapes costs the primary one collection a second, not one per scrape.
 */
export const METRICS_CACHE_MS = 1000;

/** A worker as the primary's metrics see it. */
export interface MetricsWorker {
  readonly worker: Worker;
  /** Its slot's index: the `worker` label of the slot's counters. */
  readonly index: number;
}

/** A scrape under way: the boards it waits for, and what came. */
interface Collection {
  readonly expected: Set<string>;
  readonly reports: unknown[][];
  answered: number;
  readonly check: () => void;
}

/** A board of a worker, as a key. */
const boardKey = (worker: Worker, board: string): string => `${worker.id}/${board}`;

/**
 * The primary's half of the cluster's metrics: which boards serve metrics
 * (a scrape waits for those only, and only until a short deadline), the
 * counters kept per slot, so that they stay monotonic across the workers a
 * slot goes through, and the one Prometheus text a scrape gets.
 */
export class ClusterMetrics {
  /** Boards that said metrics-on, and not metrics-off since, by worker. */
  readonly #serving = new Map<Worker, Set<string>>();
  /** The collection under way (one at most), by id: the boards' reports name it. */
  readonly #underWay = new Map<string, Collection>();
  /** Collections made (`bellwether_metrics_collections_total`); the last one's number is its id. */
  #collections = 0;
  /** The collection under way, which scrapes join. */
  #collecting: Promise<string | null> | undefined;
  /** The last collection's text and when it began; shared by scrapes until METRICS_CACHE_MS later. */
  #cached: { body: string | null; at: number } | undefined;
  /** Bumped by every change of the primary's counters or boards: a collection that saw one is not cached. */
  #generation = 0;
  /** Per slot index, per singleton: elections, runs, failed runs and step-downs. */
  readonly #singletons = new Map<number, Map<string, SingletonCounts>>();
  /** Per slot index, for slots whose workers have a session: expiries and suspensions. */
  readonly #sessions = new Map<number, SessionCounts>();
  readonly #gaps = new HandoverGaps();
  /** Told once per collection that fails (the scrapes that share it get null). */
  readonly #onFailure: (err: unknown) => void;

  constructor(onFailure: (err: unknown) => void = () => {}) {
    this.#onFailure = onFailure;
  }

  /** A worker's metrics message (metrics-request is answered through `answer`). */
  onMessage(from: MetricsWorker, message: MetricsMessage, answer: (id: string) => void): void {
    if (message.bellwether !== 'metrics-request' && message.bellwether !== 'metrics-report') this.#changed();
    switch (message.bellwether) {
      case 'metrics-on': {
        let boards = this.#serving.get(from.worker);
        if (!boards) this.#serving.set(from.worker, (boards = new Set()));
        boards.add(message.board);
        // Counters (and the gaps' histogram) exist from the start, at 0, not from their first event.
        // The gaps count from the first board on, also of singletons no board lists (the app runs them itself).
        this.#gaps.measure();
        for (const name of message.singletons) {
          this.#countsOf(from.index, name);
          this.#gaps.show(name);
        }
        if (message.zk) this.#sessionOf(from.index);
        return;
      }
      case 'metrics-off':
        this.#serving.get(from.worker)?.delete(message.board);
        this.#gone([boardKey(from.worker, message.board)]);
        return;
      case 'metrics-event':
        if (message.event === 'counts') {
          const counts = this.#countsOf(from.index, message.singleton);
          counts.elected += message.elected;
          counts.runs += message.runs;
          counts.failures += message.failures;
          // A worker of an earlier version says nothing of step-downs.
          for (const reason of DEMOTION_REASONS) counts.stepDowns[reason] += message.stepDowns?.[reason] ?? 0;
        } else {
          const session = this.#sessionOf(from.index);
          session.expiries += message.count;
          session.suspensions += message.suspensions ?? 0;
        }
        return;
      case 'metrics-term':
        this.#gaps.onTerm(from.worker, message.singleton, message.fence, message.leading);
        return;
      case 'metrics-request':
        answer(message.id);
        return;
      case 'metrics-report': {
        const collection = this.#underWay.get(message.id);
        if (!collection) return; // too late: that scrape was answered
        collection.reports.push(message.metrics);
        if (collection.expected.delete(boardKey(from.worker, message.board))) collection.answered += 1;
        collection.check();
        return;
      }
      default:
    }
  }

  /** A slot's worker was replaced: its `bellwether_worker_restarts_total` grew, so the next scrape collects again. */
  restarted(): void {
    this.#changed();
  }

  /** The worker exited: nothing of it to wait for. */
  forget(worker: Worker): void {
    this.#changed();
    this.#gaps.forget(worker);
    const boards = this.#serving.get(worker);
    this.#serving.delete(worker);
    this.#gone([...(boards ?? [])].map((board) => boardKey(worker, board)));
  }

  /**
   * The cluster's Prometheus text for a scrape, or null without prom-client or when the collection failed. Scrapes share
   * collections: one that comes while a collection is under way joins it, and one that comes
   * within METRICS_CACHE_MS of a collection's start gets its text. A change of the primary's
   * own counters (or of the boards) makes the next scrape collect again. `slots` is read
   * when the text is made.
   */
  scrape(slots: () => SlotInfo[]): Promise<string | null> {
    if (this.#cached && performance.now() - this.#cached.at < METRICS_CACHE_MS) return Promise.resolve(this.#cached.body);
    this.#collecting ??= this.#collectAll(slots).finally(() => (this.#collecting = undefined));
    return this.#collecting;
  }

  async #collectAll(slots: () => SlotInfo[]): Promise<string | null> {
    const prom = await loadPromClient();
    if (!prom) return null;
    const at = performance.now();
    const generation = this.#generation;
    // A collection that fails (workers of two versions whose series do not merge, say) is told once and
    // shared as null like a text: a flood of scrapes must not cost a failed collection (and a log line) each.
    const body = await this.#collectOnce(prom, slots).catch((err: unknown) => {
      this.#onFailure(err);
      return null;
    });
    // A counter that changed meanwhile may be missing from the workers' part: not kept for the next scrapes.
    if (generation === this.#generation) this.#cached = { body, at };
    return body;
  }

  async #collectOnce(prom: PromClient, slots: () => SlotInfo[]): Promise<string | null> {
    this.#collections += 1;
    const id = String(this.#collections);
    const targets = [...this.#serving].filter(([w, boards]) => boards.size > 0 && !w.isDead() && w.isConnected()).map(([w]) => w);
    const expected = new Set(targets.flatMap((w) => [...this.#serving.get(w)!].map((board) => boardKey(w, board))));
    const collection = await new Promise<Collection>((resolve) => {
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#underWay.delete(id);
        resolve(collection);
      };
      const collection: Collection = { expected, reports: [], answered: 0, check: () => void (expected.size === 0 && done()) };
      const timer = setTimeout(done, SCRAPE_DEADLINE_MS);
      this.#underWay.set(id, collection);
      for (const w of targets) {
        try {
          w.send({ bellwether: 'metrics-collect', id } satisfies MetricsMessage);
        } catch {
          // gone meanwhile: its exit takes it off
        }
      }
      collection.check();
    });
    // Left expected: no answer in time (a board that said metrics-off meanwhile, or whose worker exited, is neither).
    const { reports, answered, expected: missing } = collection;
    reports.push(await this.#primarySeries(prom, slots(), { answered, missing: missing.size }), await this.#gaps.collect());
    return (await aggregate(reports))?.body ?? null;
  }

  /** The primary's counters or the boards changed: the next scrape collects again. */
  #changed(): void {
    this.#generation += 1;
    this.#cached = undefined;
  }

  /** Boards that stopped serving (or whose worker exited): scrapes under way no longer wait for them. */
  #gone(keys: string[]): void {
    for (const collection of this.#underWay.values()) {
      for (const key of keys) collection.expected.delete(key);
      collection.check();
    }
  }

  #countsOf(index: number, singleton: string): SingletonCounts {
    let slot = this.#singletons.get(index);
    if (!slot) this.#singletons.set(index, (slot = new Map()));
    let counts = slot.get(singleton);
    if (!counts) slot.set(singleton, (counts = noSingletonCounts()));
    return counts;
  }

  #sessionOf(index: number): SessionCounts {
    let session = this.#sessions.get(index);
    if (!session) this.#sessions.set(index, (session = { expiries: 0, suspensions: 0 }));
    return session;
  }

  /** The primary's own series: per slot, restarts, status code and the counters; and this scrape's answers. */
  async #primarySeries(prom: PromClient, slots: SlotInfo[], boards: { answered: number; missing: number }): Promise<unknown[]> {
    const registry = new prom.Registry();
    const restarts = new prom.Counter({ name: 'bellwether_worker_restarts_total', help: 'Times the worker of a slot was replaced', labelNames: ['worker'], registers: [registry] });
    const code = new prom.Gauge({
      name: 'bellwether_worker_status_code',
      help: 'Last status code of a slot: 0 healthy, > 0 unhealthy code, -1 silent',
      labelNames: ['worker'],
      registers: [registry],
    });
    for (const slot of slots) {
      restarts.inc({ worker: String(slot.index) }, slot.restarts);
      code.set({ worker: String(slot.index) }, slot.code);
    }
    const perSingleton = (name: string, help: string, count: (counts: SingletonCounts) => number): void => {
      const counter = new prom.Counter({ name, help: `${help} (kept by the primary across the slot's workers)`, labelNames: ['worker', 'singleton'], registers: [registry] });
      for (const [index, slot] of this.#singletons) for (const [singleton, counts] of slot) counter.inc({ worker: String(index), singleton }, count(counts));
    };
    perSingleton('bellwether_singleton_leader_changes_total', 'Times a worker of the slot was elected leader of the singleton', (c) => c.elected);
    perSingleton('bellwether_singleton_runs_total', "Runs of the singleton's job (run, or its task) in the slot's workers", (c) => c.runs);
    perSingleton('bellwether_singleton_run_failures_total', "Runs of the singleton's job that failed (threw, or their thread crashed)", (c) => c.failures);
    const stepDowns = new prom.Counter({
      name: 'bellwether_singleton_step_downs_total',
      help: "Terms of the singleton that ended in the slot's workers, by reason: closed, failed (its run threw), lost (leadership went away) (kept by the primary across the slot's workers)",
      labelNames: ['worker', 'singleton', 'reason'],
      registers: [registry],
    });
    for (const [index, slot] of this.#singletons) {
      for (const [singleton, counts] of slot) for (const reason of DEMOTION_REASONS) stepDowns.inc({ worker: String(index), singleton, reason }, counts.stepDowns[reason]);
    }
    const perSession = (name: string, help: string, count: (counts: SessionCounts) => number): void => {
      if (this.#sessions.size === 0) return;
      const counter = new prom.Counter({ name, help: `${help} (kept by the primary across the slot's workers)`, labelNames: ['worker'], registers: [registry] });
      for (const [index, session] of this.#sessions) counter.inc({ worker: String(index) }, count(session));
    };
    perSession('bellwether_zk_session_expiries_total', 'ZooKeeper session expiries seen by the workers of the slot', (c) => c.expiries);
    perSession('bellwether_zk_session_suspensions_total', 'Suspensions of the ZooKeeper session (connection lost, or the server silent) seen by the workers of the slot', (c) => c.suspensions);
    const answers = new prom.Gauge({
      name: 'bellwether_metrics_workers',
      help: `Boards (one per worker, as a rule) serving metrics in this scrape: answered, or missing (no answer within ${SCRAPE_DEADLINE_MS} ms)`,
      labelNames: ['state'],
      registers: [registry],
    });
    answers.set({ state: 'answered' }, boards.answered);
    answers.set({ state: 'missing' }, boards.missing);
    new prom.Counter({
      name: 'bellwether_metrics_collections_total',
      help: `Times the primary asked every board for its series, this one included: scrapes that come while one is under way, or within ${METRICS_CACHE_MS} ms of its start (no counter changed since), share it`,
      registers: [registry],
    }).inc(this.#collections);
    return (await registry.getMetricsAsJSON()) as unknown[];
  }
}
