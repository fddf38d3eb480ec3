import type { Histogram, Registry } from 'prom-client';

type PromClient = typeof import('prom-client');

let loaded: Promise<PromClient | undefined> | undefined;

/** prom-client is an optional peer dependency: loaded on first use, `undefined` when not installed. */
export function loadPromClient(): Promise<PromClient | undefined> {
  loaded ??= import('prom-client').then(
    (module) => ((module as { default?: PromClient }).default ?? module) as PromClient,
    () => undefined,
  );
  return loaded;
}

/** Merges registries' JSON from several processes into one Prometheus text (labels keep workers apart). */
export async function aggregate(metrics: unknown[][]): Promise<{ contentType: string; body: string } | undefined> {
  const prom = await loadPromClient();
  if (!prom) return undefined;
  const registry: Registry = prom.AggregatorRegistry.aggregate(metrics as Parameters<typeof prom.AggregatorRegistry.aggregate>[0]);
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** Buckets of the handover gap, in seconds: a takeover on one host takes milliseconds, a replacement worker's boot seconds. */
const GAP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export type GapHistogram = Histogram<'singleton' | 'seen_by'>;

/**
 * `bellwether_singleton_handover_gap_seconds`: how long nobody ran a singleton between
 * two terms that followed each other directly, as `seen_by` the primary (between its
 * workers) or the process itself (between its own terms). Made the same way by both.
 */
export function gapHistogram(prom: PromClient, registry: Registry): GapHistogram {
  return new prom.Histogram({
    name: 'bellwether_singleton_handover_gap_seconds',
    help: 'Time without a runner between a term of the singleton and the next one, when no other term came between (seen_by: the primary, between its workers; or the process, between its own terms)',
    labelNames: ['singleton', 'seen_by'],
    buckets: GAP_BUCKETS,
    registers: [registry],
  });
}
