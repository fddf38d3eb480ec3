import type { Worker } from 'node:cluster';
import { aggregate, loadPromClient } from '../status/metrics.js';
import type { MetricsMessage } from './protocol.js';
import type { SlotInfo } from './slot.js';

type PromClient = NonNullable<Awaited<ReturnType<typeof loadPromClient>>>;

/**
 * How long a scrape waits for the workers that serve metrics. One that has
 * not answered by then (blocked, or busy beyond this) is left out of that
 * scrape and counted in `bellwether_metrics_workers{state="missing"}`.
 */
export const SCRAPE_DEADLINE_MS = 500;

interface SingletonCounts {
  elected: number;
  runs: number;
  failures: number;
}

/** A worker as the primary's metrics see it. */
export interface MetricsWorker {
  readonly worker: Worker;
  /** Its slot's index: the `worker` label of the slot's counters. */
  readonly index: number;
}

/**
 * The primary's half of the cluster's metrics: which workers serve metrics
 * (a scrape waits for those only, and only until a short deadline), the
 * counters kept per slot, so that they stay monotonic across the workers a
 * slot goes through, and the one Prometheus text a scrape gets.
 */
export class ClusterMetrics {
  /** Workers that said metrics-on, and not metrics-off since. */
  readonly #serving = new Set<Worker>();
  readonly #pending = new Map<string, (from: Worker, metrics: unknown[]) => void>();
  /** Per slot index, per singleton: elections, runs and failed runs. */
  readonly #singletons = new Map<number, Map<string, SingletonCounts>>();
  /** Per slot index, for slots whose workers have a session: expiries. */
  readonly #expiries = new Map<number, number>();

  /** A worker's metrics message (metrics-request is answered through `answer`). */
  onMessage(from: MetricsWorker, message: MetricsMessage, answer: (id: string) => void): void {
    switch (message.bellwether) {
      case 'metrics-on': {
        this.#serving.add(from.worker);
        // Counters exist from the start, at 0, not from their first event.
        for (const name of message.singletons) this.#countsOf(from.index, name);
        if (message.zk && !this.#expiries.has(from.index)) this.#expiries.set(from.index, 0);
        return;
      }
      case 'metrics-off':
        this.#serving.delete(from.worker);
        return;
      case 'metrics-event':
        if (message.event === 'elected') this.#countsOf(from.index, message.singleton).elected += 1;
        else if (message.event === 'ran') {
          const counts = this.#countsOf(from.index, message.singleton);
          counts.runs += 1;
          if (message.failed) counts.failures += 1;
        } else this.#expiries.set(from.index, (this.#expiries.get(from.index) ?? 0) + 1);
        return;
      case 'metrics-request':
        answer(message.id);
        return;
      case 'metrics-report':
        this.#pending.get(message.id)?.(from.worker, message.metrics);
        return;
      default:
    }
  }

  /** The worker exited: nothing to wait for. */
  forget(worker: Worker): void {
    this.#serving.delete(worker);
  }

  /** The cluster's Prometheus text for one scrape, or null without prom-client. */
  async scrape(id: string, slots: SlotInfo[]): Promise<string | null> {
    const prom = await loadPromClient();
    if (!prom) return null;
    const expected = [...this.#serving].filter((w) => !w.isDead() && w.isConnected());
    const reports: unknown[][] = [];
    const answered = new Set<Worker>();
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(finish, SCRAPE_DEADLINE_MS);
      this.#pending.set(id, (from, metrics) => {
        reports.push(metrics);
        answered.add(from);
        if (expected.every((w) => answered.has(w))) finish();
      });
      if (expected.length === 0) finish();
      for (const w of expected) {
        try {
          w.send({ bellwether: 'metrics-collect', id } satisfies MetricsMessage);
        } catch {
          // gone meanwhile: counted missing
        }
      }
    });
    this.#pending.delete(id);
    const missing = expected.filter((w) => !answered.has(w)).length;
    reports.push(await this.#primarySeries(prom, slots, { answered: expected.length - missing, missing }));
    return (await aggregate(reports))?.body ?? null;
  }

  #countsOf(index: number, singleton: string): SingletonCounts {
    let slot = this.#singletons.get(index);
    if (!slot) this.#singletons.set(index, (slot = new Map()));
    let counts = slot.get(singleton);
    if (!counts) slot.set(singleton, (counts = { elected: 0, runs: 0, failures: 0 }));
    return counts;
  }

  /** The primary's own series: per slot, restarts, status code and the counters; and this scrape's answers. */
  async #primarySeries(prom: PromClient, slots: SlotInfo[], workers: { answered: number; missing: number }): Promise<unknown[]> {
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
    if (this.#expiries.size > 0) {
      const expiries = new prom.Counter({
        name: 'bellwether_zk_session_expiries_total',
        help: 'ZooKeeper session expiries seen by the workers of the slot (kept by the primary across the slot\'s workers)',
        labelNames: ['worker'],
        registers: [registry],
      });
      for (const [index, n] of this.#expiries) expiries.inc({ worker: String(index) }, n);
    }
    const answers = new prom.Gauge({
      name: 'bellwether_metrics_workers',
      help: `Workers serving metrics in this scrape: answered, or missing (no answer within ${SCRAPE_DEADLINE_MS} ms)`,
      labelNames: ['state'],
      registers: [registry],
    });
    answers.set({ state: 'answered' }, workers.answered);
    answers.set({ state: 'missing' }, workers.missing);
    return (await registry.getMetricsAsJSON()) as unknown[];
  }
}
