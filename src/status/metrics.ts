import type { Registry } from 'prom-client';

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
