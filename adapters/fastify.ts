/**
 * `bellwether/fastify`: a Fastify 5 plugin that starts bellwether's parts with
 * the app and exposes their state over HTTP.
 *
 * ```ts
 * import Fastify from 'fastify';
 * import { singleton } from 'bellwether';
 * import bellwether from 'bellwether/fastify';
 *
 * const app = Fastify();
 * await app.register(bellwether, { singletons: [singleton({ name: 'reporter', run })] });
 * app.bellwether.snapshot();       // worker index, singletons and who leads, zk session
 * await app.listen({ port: 3000 }); // from now on /readyz answers 200 (and the supervisor knows)
 * ```
 *
 * - Registration resolves once the board has started (singletons contending,
 *   a latent zk session connected): a Fastify app that is ready has its parts
 *   running.
 * - `GET /healthz` (live), `GET /readyz` (200 once listening, and the zk
 *   session connected if there is one; 503 otherwise), `GET /bellwether` (the
 *   snapshot), `GET /metrics` with `metrics: true` (Prometheus text; 503 when
 *   prom-client is not installed). Paths are configurable with `paths`.
 * - `app.close()` closes what the plugin started: the singletons, and the zk
 *   session only if it was given to the plugin unstarted.
 */
import { BellwetherError, ErrorCodes, StatusBoard, type Singleton, type StatusBoardOptions, type ZkSession } from 'bellwether';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';

export interface BellwetherFastifyPaths {
  /** Liveness: 200 `{ live: true }` while the process answers. Default `/healthz`. */
  health?: string;
  /** Readiness: 200 `{ ready: true }` or 503 `{ ready: false }`. Default `/readyz`. */
  ready?: string;
  /** The status snapshot as JSON. Default `/bellwether`. */
  status?: string;
  /** Prometheus text, only with `metrics: true`. Default `/metrics`. */
  metrics?: string;
}

export interface BellwetherFastifyOptions {
  /** Singletons from `singleton({...})`, not started: the plugin starts and closes them. */
  singletons?: Singleton[];
  /** A ZooKeeper session: started and closed by the plugin if it is not started yet; otherwise yours. */
  zk?: ZkSession;
  /** Serve Prometheus metrics on `paths.metrics` (needs prom-client). Default `false`. */
  metrics?: boolean;
  /** Where the routes are. */
  paths?: BellwetherFastifyPaths;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** bellwether's status board: `snapshot()`, `ready`, `live`, `metrics()`. */
    bellwether: StatusBoard;
  }
}

const DEFAULT_PATHS: Required<BellwetherFastifyPaths> = {
  health: '/healthz',
  ready: '/readyz',
  status: '/bellwether',
  metrics: '/metrics',
};

const KNOWN_OPTIONS = ['singletons', 'zk', 'metrics', 'paths'] as const;
const PATH_KEYS = Object.keys(DEFAULT_PATHS) as (keyof BellwetherFastifyPaths)[];
/** An absolute URL path without query, fragment, whitespace or route parameters. */
const ROUTE_PATH = /^\/[^\s?#:*]*$/;

interface Resolved {
  board: StatusBoardOptions;
  metrics: boolean;
  paths: Required<BellwetherFastifyPaths>;
}

function invalid(message: string): BellwetherError {
  return new BellwetherError(ErrorCodes.INVALID_OPTION, `bellwether/fastify: ${message}`);
}

function show(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Checks the plugin's own options; the board checks `singletons` and `zk` itself. */
function resolveOptions(options: unknown): Resolved {
  const given = options ?? {};
  if (!isPlainObject(given)) throw invalid(`options must be an object, got ${show(given)}`);
  for (const key of Object.keys(given)) {
    if ((KNOWN_OPTIONS as readonly string[]).includes(key)) continue;
    const hint = key === 'prefix' ? ' (the plugin is not encapsulated, so prefix would be ignored: set paths instead)' : '';
    throw invalid(`unknown option ${JSON.stringify(key)}${hint} (known: ${KNOWN_OPTIONS.join(', ')})`);
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
  const paths = { ...DEFAULT_PATHS };
  for (const key of PATH_KEYS) {
    const value = pathsGiven[key];
    if (value === undefined) continue;
    if (typeof value !== 'string' || !ROUTE_PATH.test(value)) {
      throw invalid(`paths.${key} must be a path starting with "/" (no query, spaces or route parameters), got ${show(value)}`);
    }
    paths[key] = value;
  }
  // Only the routes that will exist have to be distinct.
  const used = PATH_KEYS.filter((key) => key !== 'metrics' || metrics);
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
  return { board, metrics, paths };
}

const plugin: FastifyPluginAsync<BellwetherFastifyOptions> = async (fastify: FastifyInstance, options) => {
  // Before anything is created or started: a second registration must not start a second board.
  if (fastify.hasDecorator('bellwether')) {
    throw new BellwetherError(
      ErrorCodes.ALREADY_STARTED,
      'bellwether/fastify is already registered on this Fastify instance (or a parent): register it once, ' +
        'with every singleton in its `singletons` option',
    );
  }
  const { board: boardOptions, metrics, paths } = resolveOptions(options);
  const board = new StatusBoard(boardOptions);
  fastify.decorate('bellwether', board);

  try {
    await board.start();
  } catch (err) {
    // Whatever started before the failure stops now: the app will not boot.
    await board.close().catch(() => {});
    throw err;
  }
  fastify.addHook('onClose', async () => {
    await board.close();
  });
  // Fastify 5: after the server listens. An app that is only inject()ed never becomes ready.
  fastify.addHook('onListen', async () => {
    board.markReady();
  });

  fastify.get(paths.health, async (_request, reply) => {
    const live = board.live;
    return reply.code(live ? 200 : 503).send({ live });
  });
  fastify.get(paths.ready, async (_request, reply) => {
    const ready = board.ready;
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  fastify.get(paths.status, async () => board.snapshot());
  if (metrics) {
    fastify.get(paths.metrics, async (_request, reply) => {
      const result = await board.metrics();
      if (result === undefined) {
        return reply.code(503).send({ error: 'metrics are unavailable: install prom-client (an optional peer dependency of bellwether)' });
      }
      return reply.code(200).header('content-type', result.contentType).send(result.body);
    });
  }
};

/** The plugin: `await app.register(bellwether, options)`. Registered once per app. */
const bellwether = fastifyPlugin(plugin, { fastify: '5.x', name: 'bellwether' });

export default bellwether;
export { bellwether };
