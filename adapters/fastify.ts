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
 * - `GET /healthz` (live), `GET /readyz` (200 once listening; with
 *   `readiness: 'serving+zk'` also while the zk session is connected; 503
 *   otherwise), `GET /bellwether` (the
 *   snapshot), `GET /metrics` with `metrics: true` (Prometheus text; 503 when
 *   prom-client is not installed, 500 when collecting failed). Paths are configurable with `paths`.
 * - Under the supervisor, the worker is ready once the plugin has started and
 *   the app listens (not as soon as it listens), and the supervisor's graceful
 *   stop closes the app (`worker.onShutdown(() => app.close())`).
 * - `app.close()` closes what the plugin started: the singletons, and the zk
 *   session only if it was given to the plugin unstarted.
 * - The singletons and the session log their state changes to `app.log`
 *   when the app logs (made with `logger` or `loggerInstance`) and they were
 *   given no logger of their own; `logger` chooses another, `false` none.
 *   Nothing is logged per request.
 */
import { BellwetherError, ErrorCodes, type Logger, type Readiness, StatusBoard, type Singleton, type ZkSession } from 'bellwether';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { worker } from 'bellwether/worker';
import { type AdapterPaths, METRICS_FAILED, METRICS_UNAVAILABLE, type ResolvedAdapterOptions, resolveAdapterOptions } from './options.js';

export type BellwetherFastifyPaths = AdapterPaths;

export interface BellwetherFastifyOptions {
  /** Singletons from `singleton({...})`, not started: the plugin starts and closes them. */
  singletons?: Singleton[];
  /** A ZooKeeper session: started and closed by the plugin if it is not started yet; otherwise yours. */
  zk?: ZkSession;
  /** Serve Prometheus metrics on `paths.metrics` (needs prom-client). Default `false`. */
  metrics?: boolean;
  /**
   * What `/readyz` needs once serving: `'serving'` (default), or `'serving+zk'`
   * (also the zk session connected: every worker turns unready while ZooKeeper is down).
   */
  readiness?: Readiness;
  /** Where the routes are. */
  paths?: BellwetherFastifyPaths;
  /**
   * For the singletons and the session that have no logger of their own.
   * Default: `app.log` when the app logs (Fastify made with `logger` or
   * `loggerInstance`); `false`: none.
   */
  logger?: Logger | false;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** bellwether's status board: `snapshot()`, `ready`, `live`, `metrics()`. */
    bellwether: StatusBoard;
  }
}

const resolveOptions = (options: unknown, fastify: FastifyInstance): ResolvedAdapterOptions =>
  resolveAdapterOptions(
    options,
    'bellwether/fastify',
    { prefix: 'the plugin is not encapsulated, so prefix would be ignored: set paths instead' },
    // Fastify's own register options: Fastify applies them to the plugin's routes.
    ['logLevel', 'logSerializers'],
    // An app made without a logger has a stand-in with no level, and a 'silent' or 'fatal' logger drops
    // errors: errors of the parts that have no listener are then process warnings, as without the plugin.
    logsErrors(fastify.log) ? fastify.log : undefined,
  );

/** Whether Fastify's logger writes `error` lines (pino's isLevelEnabled; an app without a logger has no level). */
function logsErrors(log: FastifyInstance['log']): boolean {
  if (log.level === undefined) return false;
  const enabled = (log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled;
  return typeof enabled === 'function' ? enabled.call(log, 'error') : log.level !== 'silent' && log.level !== 'fatal';
}

/**
 * Apps that have the plugin, by their HTTP server: every context of an app
 * (parent, child, sibling) shares it, while `hasDecorator` sees only the
 * context and its parents.
 */
const registered = new WeakSet<object>();

const plugin: FastifyPluginAsync<BellwetherFastifyOptions> = async (fastify: FastifyInstance, options) => {
  // Before anything is created or started: a second registration must not start a second board.
  if (registered.has(fastify.server) || fastify.hasDecorator('bellwether')) {
    throw new BellwetherError(
      ErrorCodes.ALREADY_STARTED,
      'bellwether/fastify is already registered in this Fastify app (on this instance, a parent or another context): ' +
        'register it once, with every singleton in its `singletons` option',
    );
  }
  const { board: boardOptions, metrics, paths } = resolveOptions(options, fastify);
  const board = new StatusBoard(boardOptions);
  registered.add(fastify.server);
  fastify.decorate('bellwether', board);
  // Ready to the supervisor once started and listening (onListen below), not as soon as the server listens.
  worker.deferReady();
  // The supervisor's graceful stop closes the app (once its HTTP servers are drained): onClose closes the board.
  worker.onShutdown(() => fastify.close());

  // If starting fails, the board closes what it started, and registration fails.
  try {
    await board.start();
  } catch (err) {
    // Cancelled by the worker's stop (a slow ZooKeeper connect): the app loads on and the stop closes it.
    if (board.cancelled) return;
    throw err;
  }
  fastify.addHook('onClose', async () => {
    await board.close();
  });
  // Fastify 5: after the server listens. An app that is only inject()ed never becomes ready.
  fastify.addHook('onListen', async () => {
    board.markReady();
  });

  // Like Express's: no cache or proxy keeps an answer that is about this moment.
  const send = (reply: FastifyReply, ok: boolean, body: unknown): FastifyReply => reply.code(ok ? 200 : 503).header('cache-control', 'no-store').send(body);
  if (paths.health !== undefined) {
    fastify.get(paths.health, async (_request, reply) => {
      const live = board.live;
      return send(reply, live, { live });
    });
  }
  if (paths.ready !== undefined) {
    fastify.get(paths.ready, async (_request, reply) => {
      const ready = board.ready;
      return send(reply, ready, { ready });
    });
  }
  if (paths.status !== undefined) fastify.get(paths.status, async (_request, reply) => send(reply, true, board.snapshot()));
  if (paths.metrics !== undefined) {
    fastify.get(paths.metrics, async (_request, reply) => {
      const result = await board.metrics().catch(() => null);
      // Answered here, like Express's, rather than by Fastify's error handler: with no-store.
      if (result === null) return reply.code(500).header('cache-control', 'no-store').send(METRICS_FAILED);
      if (result === undefined) return send(reply, false, METRICS_UNAVAILABLE);
      return send(reply.header('content-type', result.contentType), true, result.body);
    });
  }
};

/** The plugin: `await app.register(bellwether, options)`. Registered once per app. */
const bellwether = fastifyPlugin(plugin, { fastify: '5.x', name: 'bellwether' });

export default bellwether;
export { bellwether };
