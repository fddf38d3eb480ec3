import type { Worker } from 'node:cluster';
import type { Registry } from 'prom-client';
import { type EndedTerm, followsDirectly, gapSince } from '../singleton/fence.js';
import { type GapHistogram, gapHistogram, loadPromClient } from '../status/metrics.js';

/** The histogram, once prom-client is loaded, and the singletons it shows. */
interface Series {
  readonly registry: Registry;
  readonly gaps: GapHistogram;
  readonly shown: Set<string>;
}

/** One singleton, as the primary sees its terms: the workers in one now, and the last term that ended. */
interface Terms {
  readonly running: Map<Worker, bigint>;
  ended: EndedTerm | undefined;
}

/**
 * Handover gaps between the primary's workers, as the primary sees them:
 * from a term of a singleton ending in a worker (the worker says so once its
 * job has settled, or the worker exits) to the next term of it beginning in
 * any worker (the worker says so), both when their messages reach the
 * primary. Only a next term that follows directly (by the fences: the host
 * lock's next generation, in the same fleet term) is measured: after any
 * other, something the primary does not see (another process on the host,
 * another host of the fleet) may have run meanwhile.
 */
export class HandoverGaps {
  readonly #terms = new Map<string, Terms>();
  /** Made once a board serves metrics (a primary nobody scrapes loads no prom-client): gaps count from then on. */
  #series: Promise<Series | undefined> | undefined;

  /** A worker's term of `singleton` began (`leading`) or ended. */
  onTerm(worker: Worker, singleton: string, fence: string, leading: boolean): void {
    // Our own protocol, but a malformed fence must not throw in the primary.
    if (!/^\d{1,40}$/.test(fence)) return;
    if (leading) this.#begun(worker, singleton, BigInt(fence));
    else this.#ended(worker, singleton);
  }

  /** The worker exited: a term under way in it ended now (a SIGKILL says nothing else). */
  forget(worker: Worker): void {
    for (const [singleton, terms] of this.#terms) if (terms.running.has(worker)) this.#ended(worker, singleton);
  }

  /** Gaps are measured from now on (prom-client is loaded once, if the app has it). */
  measure(): void {
    void this.#seriesOnce();
  }

  /** The histogram of `singleton` is shown from now on, at 0 until a first gap. */
  show(singleton: string): void {
    void this.#seriesOnce().then((series) => {
      // Zeroing resets: only a singleton without samples yet.
      if (!series || series.shown.has(singleton)) return;
      series.shown.add(singleton);
      series.gaps.zero({ singleton, seen_by: 'primary' });
    });
  }

  /** prom-client JSON of the histogram ([] before it is needed, or without prom-client). */
  async collect(): Promise<unknown[]> {
    const series = await this.#series;
    return series ? ((await series.registry.getMetricsAsJSON()) as unknown[]) : [];
  }

  #begun(worker: Worker, singleton: string, fence: bigint): void {
    const terms = this.#termsOf(singleton);
    const gap = gapSince(terms.ended, fence);
    if (gap !== undefined) this.#observe(singleton, gap / 1000);
    // The term it follows has not been seen to end (its worker's message or exit comes after this one's):
    // as far as the primary can see, nobody was without it.
    else if ([...terms.running.values()].some((running) => followsDirectly(running, fence))) this.#observe(singleton, 0);
    terms.ended = undefined;
    terms.running.set(worker, fence);
  }

  #ended(worker: Worker, singleton: string): void {
    const terms = this.#terms.get(singleton);
    const fence = terms?.running.get(worker);
    if (!terms || fence === undefined) return;
    terms.running.delete(worker);
    // An end seen late (after the next term's) must not stand for the latest.
    if (!terms.ended || fence > terms.ended.fence) terms.ended = { fence, at: performance.now() };
  }

  #termsOf(singleton: string): Terms {
    let terms = this.#terms.get(singleton);
    if (!terms) this.#terms.set(singleton, (terms = { running: new Map(), ended: undefined }));
    return terms;
  }

  #observe(singleton: string, seconds: number): void {
    void this.#series?.then((series) => {
      series?.shown.add(singleton);
      series?.gaps.observe({ singleton, seen_by: 'primary' }, seconds);
    });
  }

  #seriesOnce(): Promise<Series | undefined> {
    this.#series ??= loadPromClient().then((prom) => {
      if (!prom) return undefined;
      const registry = new prom.Registry();
      return { registry, gaps: gapHistogram(prom, registry), shown: new Set<string>() };
    });
    return this.#series;
  }
}
