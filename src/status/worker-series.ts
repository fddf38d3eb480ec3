import type { Counter, Gauge, Registry } from 'prom-client';
import type { Singleton } from '../singleton/singleton.js';
import type { ZkSession, ZkSessionState } from '../zk/session.js';
import type { loadPromClient } from './metrics.js';

type PromClient = NonNullable<Awaited<ReturnType<typeof loadPromClient>>>;

const SESSION_STATES: ZkSessionState[] = ['latent', 'connecting', 'connected', 'suspended', 'closed'];

/**
 * One process's series, set from the singletons and the session each time
 * they are collected. Under the supervisor the primary leaves out the
 * counters (it keeps its own, per slot, across restarts); a scrape without
 * the primary shows them.
 */
export class WorkerSeries {
  readonly registry: Registry;
  readonly #leader: Gauge<'singleton'>;
  readonly #lastRun: Gauge<'singleton'>;
  readonly #elections: Counter<'singleton'>;
  readonly #runs: Counter<'singleton'>;
  readonly #failures: Counter<'singleton'>;
  readonly #session: { state: Gauge<'state'>; expiries: Counter } | undefined;

  constructor(prom: PromClient, labels: Record<string, string>, withSession: boolean) {
    const registry = (this.registry = new prom.Registry());
    registry.setDefaultLabels(labels);
    const bySingleton = { labelNames: ['singleton'] as const, registers: [registry] };
    this.#leader = new prom.Gauge({ name: 'bellwether_singleton_leader', help: '1 while this worker leads the singleton', ...bySingleton });
    this.#lastRun = new prom.Gauge({ name: 'bellwether_singleton_last_run_seconds', help: "Duration of the last settled run of the singleton's job in this worker", ...bySingleton });
    this.#elections = new prom.Counter({ name: 'bellwether_singleton_leader_changes_total', help: 'Times this worker was elected leader of the singleton', ...bySingleton });
    this.#runs = new prom.Counter({ name: 'bellwether_singleton_runs_total', help: "Runs of the singleton's job (run, or its task) in this worker", ...bySingleton });
    this.#failures = new prom.Counter({ name: 'bellwether_singleton_run_failures_total', help: "Runs of the singleton's job in this worker that failed (threw, or their thread crashed)", ...bySingleton });
    this.#session = withSession
      ? {
          state: new prom.Gauge({ name: 'bellwether_zk_session_state', help: '1 for the current state of the ZooKeeper session', labelNames: ['state'], registers: [registry] }),
          expiries: new prom.Counter({ name: 'bellwether_zk_session_expiries_total', help: 'ZooKeeper session expiries seen by this worker', registers: [registry] }),
        }
      : undefined;
  }

  /** prom-client JSON of the current state; `withCounters: false` for the primary. */
  async collect(singletons: Singleton[], zk: ZkSession | undefined, withCounters: boolean): Promise<unknown[]> {
    for (const metric of [this.#leader, this.#lastRun, this.#elections, this.#runs, this.#failures, this.#session?.state, this.#session?.expiries]) metric?.reset();
    for (const job of singletons) {
      const singleton = job.name;
      this.#leader.set({ singleton }, job.isLeader ? 1 : 0);
      const ms = job.lastRun?.durationMs;
      if (ms !== undefined) this.#lastRun.set({ singleton }, ms / 1000);
      this.#elections.inc({ singleton }, job.elections);
      this.#runs.inc({ singleton }, job.runs);
      this.#failures.inc({ singleton }, job.runFailures);
    }
    if (this.#session && zk) {
      for (const state of SESSION_STATES) this.#session.state.set({ state }, state === zk.state ? 1 : 0);
      this.#session.expiries.inc(zk.expiries);
    }
    const metrics = (await this.registry.getMetricsAsJSON()) as { type?: unknown }[];
    return withCounters ? metrics : metrics.filter((metric) => metric.type !== 'counter');
  }
}
