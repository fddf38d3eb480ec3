/**
 * What both adapters accept, checked the same way before anything starts:
 * `singletons`, `zk` and `logger` (checked by the StatusBoard), `metrics` and `paths`.
 */
import { BellwetherError, ErrorCodes, type Logger, type Readiness, type Singleton, type StatusBoardOptions, type ZkSession } from 'bellwether';

/**
 * Where each endpoint is, or `false` for none. The status snapshot and the
 * metrics show pids, singleton names, fencing tokens and ZooKeeper session
 * ids: serve them on an internal port or behind auth, not on a public one.
 */
export interface AdapterPaths {
  /** Liveness: 200 `{ live: true }` while the process answers. Default `/healthz`. */
  health?: string | false;
  /** Readiness: 200 `{ ready: true }` or 503 `{ ready: false }`. Default `/readyz`. */
  ready?: string | false;
  /** The status snapshot as JSON. Default `/bellwether`. */
  status?: string | false;
  /** Prometheus text, only with `metrics: true`. Default `/metrics`. */
  metrics?: string | false;
}

/** The endpoints served, by kind: a disabled one (`false`) is absent, and so is metrics without `metrics: true`. */
export type ServedPaths = Partial<Record<keyof AdapterPaths, string>>;

export const DEFAULT_PATHS: Required<Record<keyof AdapterPaths, string>> = {
  health: '/healthz',
  ready: '/readyz',
  status: '/bellwether',
  metrics: '/metrics',
};

const KNOWN_OPTIONS = ['singletons', 'zk', 'metrics', 'paths', 'readiness', 'logger'] as const;
const PATH_KEYS = Object.keys(DEFAULT_PATHS) as (keyof AdapterPaths)[];
/** An absolute URL path without query, fragment, whitespace or route parameters. */
const ROUTE_PATH = /^\/[^\s?#:*]*$/;

export interface ResolvedAdapterOptions {
  board: StatusBoardOptions;
  metrics: boolean;
  paths: ServedPaths;
}

/** BW_ERR_INVALID_OPTION, prefixed with the adapter's name. */
export function adapterError(adapter: string, message: string): BellwetherError {
  return new BellwetherError(ErrorCodes.INVALID_OPTION, `${adapter}: ${message}`);
}

export function show(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Checks an adapter's own options; the board checks `singletons`, `zk` and
 * `logger` itself. `hints` explain some unknown keys; `framework` keys belong
 * to the framework (Fastify's register options) and are left to it.
 * `defaultLogger`: for the parts when `logger` is not given (`false`: none).
 */
export function resolveAdapterOptions(
  options: unknown,
  adapter: string,
  hints: Record<string, string> = {},
  framework: readonly string[] = [],
  defaultLogger?: Logger,
): ResolvedAdapterOptions {
  const invalid = (message: string): BellwetherError => adapterError(adapter, message);
  const given = options ?? {};
  if (!isPlainObject(given)) throw invalid(`options must be an object, got ${show(given)}`);
  for (const key of Object.keys(given)) {
    if (!(KNOWN_OPTIONS as readonly string[]).includes(key) && !framework.includes(key)) {
      const hint = hints[key] ? ` (${hints[key]})` : '';
      throw invalid(`unknown option ${JSON.stringify(key)}${hint} (known: ${KNOWN_OPTIONS.join(', ')})`);
    }
  }

  const metrics = given['metrics'] ?? false;
  if (typeof metrics !== 'boolean') throw invalid(`metrics must be a boolean, got ${show(metrics)}`);

  const pathsGiven = given['paths'] ?? {};
  if (!isPlainObject(pathsGiven)) throw invalid(`paths must be an object, got ${show(pathsGiven)}`);
  for (const key of Object.keys(pathsGiven)) {
    if (!(PATH_KEYS as string[]).includes(key)) {
      throw invalid(`unknown paths key ${JSON.stringify(key)} (known: ${PATH_KEYS.join(', ')})`);
    }
  }
  const paths: ServedPaths = {};
  for (const key of PATH_KEYS) {
    const value = pathsGiven[key];
    if (value !== undefined && value !== false && (typeof value !== 'string' || !ROUTE_PATH.test(value))) {
      throw invalid(`paths.${key} must be a path starting with "/" (no query, spaces or route parameters), or false for no such endpoint, got ${show(value)}`);
    }
    // `metrics: true` with `paths.metrics: false` still collects: board.metrics() can serve them on another listener.
    if (value === false || (key === 'metrics' && !metrics)) continue;
    paths[key] = value ?? DEFAULT_PATHS[key];
  }
  // Only the endpoints that will exist have to be distinct.
  const used = PATH_KEYS.filter((key) => paths[key] !== undefined);
  for (let i = 0; i < used.length; i++) {
    for (let j = i + 1; j < used.length; j++) {
      if (paths[used[i]!] === paths[used[j]!]) {
        throw invalid(`paths.${used[i]} and paths.${used[j]} are both ${JSON.stringify(paths[used[i]!])}`);
      }
    }
  }

  // Only what was given: the board has its own defaults and checks.
  const board: StatusBoardOptions = { metrics };
  if (given['singletons'] !== undefined) board.singletons = given['singletons'] as Singleton[];
  if (given['zk'] !== undefined) board.zk = given['zk'] as ZkSession;
  if (given['readiness'] !== undefined) board.readiness = given['readiness'] as Readiness;
  const logger = given['logger'] === undefined ? defaultLogger : given['logger'];
  if (logger !== undefined && logger !== false) board.logger = logger as Logger;
  return { board, metrics, paths };
}


/** The answer of a metrics endpoint (500) when board.metrics() failed. */
export const METRICS_FAILED = { error: 'metrics collection failed' };

/** The answer of a metrics endpoint when prom-client is not installed. */
export const METRICS_UNAVAILABLE = { error: 'metrics are unavailable: install prom-client (an optional peer dependency of bellwether)' };
