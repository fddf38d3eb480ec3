import type { Counter, Gauge, Registry } from 'prom-client';
import type { Singleton } from '../singleton/singleton.js';
import type { ZkSession, ZkSessionState } from '../zk/session.js';
import { type GapHistogram, gapHistogram, type loadPromClient } from './metrics.js';
import { DEMOTION_REASONS } from './process-counts.js';

type PromClient = NonNullable<Awaited<ReturnType<typeof loadPromClient>>>;

const SESSION_STATES: ZkSessionState[] = ['latent', 'connecting', 'connected', 'suspended', 'closed'];

/**
 * One process's series, set from the singletons and the session each time
 * they are collected. Under the supervisor the primary leaves out the
 * counters (it keeps its own, per slot, across restarts) and the handover
 * gaps (it sees every term of its workers); a scrape without the primary
 * shows them.
 */
export class WorkerSeries {
  readonly registry: Registry;
  readonly #leader: Gauge<'singleton'>;
  readonly #lastRun: Gauge<'singleton'>;
  readonly #elections: Counter<'singleton'>;
  readonly #runs: Counter<'singleton'>;
  readonly #failures: Counter<'singleton'>;
  readonly #stepDowns: Counter<'singleton' | 'reason'>;
  /** Observed as the gaps come (not set from the singletons): a histogram keeps every sample. */
  readonly #gaps: GapHistogram;
  /** Singletons whose gap histogram exists, at 0 until a first sample. */
  readonly #gapsShown = new Set<string>();
  readonly #session: { state: Gauge<'state'>; expiries: Counter; suspensions: Counter } | undefined;

  constructor(prom: PromClient, labels: Record<string, string>, withSession: boolean) {
    const registry = (this.registry = new prom.Registry());
    registry.setDefaultLabels(labels);
    const bySingleton = { labelNames: ['singleton'] as const, registers: [registry] };
    this.#leader = new prom.Gauge({ name: 'bellwether_singleton_leader', help: '1 while this worker leads the singleton', ...bySingleton });
    this.#lastRun = new prom.Gauge({ name: 'bellwether_singleton_last_run_seconds', help: "Duration of the last settled run of the singleton's job in this worker", ...bySingleton });
    this.#elections = new prom.Counter({ name: 'bellwether_singleton_leader_changes_total', help: 'Times this worker was elected leader of the singleton', ...bySingleton });
    this.#runs = new prom.Counter({ name: 'bellwether_singleton_runs_total', help: "Runs of the singleton's job (run, or its task) in this worker", ...bySingleton });
    this.#failures = new prom.Counter({ name: 'bellwether_singleton_run_failures_total', help: "Runs of the singleton's job in this worker that failed (threw, or their thread crashed)", ...bySingleton });
    this.#stepDowns = new prom.Counter({
      name: 'bellwether_singleton_step_downs_total',
      help: "Terms of the singleton that ended in this worker, by reason: closed, failed (its run threw), lost (leadership went away)",
      labelNames: ['singleton', 'reason'],
      registers: [registry],
    });
    this.#gaps = gapHistogram(prom, registry);
    this.#session = withSession
      ? {
          state: new prom.Gauge({ name: 'bellwether_zk_session_state', help: '1 for the current state of the ZooKeeper session', labelNames: ['state'], registers: [registry] }),
          expiries: new prom.Counter({ name: 'bellwether_zk_session_expiries_total', help: 'ZooKeeper session expiries seen by this worker', registers: [registry] }),
          suspensions: new prom.Counter({ name: 'bellwether_zk_session_suspensions_total', help: 'Suspensions of the ZooKeeper session (connection lost, or the server silent) seen by this worker', registers: [registry] }),
        }
      : undefined;
  }

  /** A handover gap this process measured between two of its own terms of `singleton`. */
  observeGap(singleton: string, seconds: number): void {
    this.#gapsShown.add(singleton);
    this.#gaps.observe({ singleton, seen_by: 'process' }, seconds);
  }

  /** prom-client JSON of the current state; `withCounters: false` for the primary. */
  async collect(singletons: Singleton[], zk: ZkSession | undefined, withCounters: boolean): Promise<unknown[]> {
    const session = this.#session;
    for (const metric of [this.#leader, this.#lastRun, this.#elections, this.#runs, this.#failures, this.#stepDowns, session?.state, session?.expiries, session?.suspensions]) metric?.reset();
    for (const job of singletons) {
      const singleton = job.name;
      this.#leader.set({ singleton }, job.isLeader ? 1 : 0);
      const ms = job.lastRun?.durationMs;
      if (ms !== undefined) this.#lastRun.set({ singleton }, ms / 1000);
      this.#elections.inc({ singleton }, job.elections);
      this.#runs.inc({ singleton }, job.runs);
      this.#failures.inc({ singleton }, job.runFailures);
      const { stepDowns } = job;
      for (const reason of DEMOTION_REASONS) this.#stepDowns.inc({ singleton, reason }, stepDowns[reason]);
      if (!this.#gapsShown.has(singleton)) {
        this.#gapsShown.add(singleton);
        this.#gaps.zero({ singleton, seen_by: 'process' });
      }
    }
    if (session && zk) {
      for (const state of SESSION_STATES) session.state.set({ state }, state === zk.state ? 1 : 0);
      session.expiries.inc(zk.expiries);
      session.suspensions.inc(zk.suspensions);
    }
    const metrics = (await this.registry.getMetricsAsJSON()) as { type?: unknown }[];
    return withCounters ? metrics : metrics.filter((metric) => metric.type !== 'counter' && metric.type !== 'histogram');
  }
}
