// A Fastify app for the prefork supervisor: `npm run example:fastify`
// (= node dist/cli.js start examples/fastify/server.js --workers 4).
//
// Every worker serves GET / on PORT (default 3000, shared by the workers)
// and registers bellwether's plugin: /healthz, /readyz, /bellwether and
// /metrics (one scrape shows every worker). Exactly one worker runs the
// health reporter, a singleton that logs a report every second: one per
// host with flock(2), or, with ZK_CONNECT=host:port[,...], one per fleet
// (scope 'host+cluster': the host's lock holder stands in a ZooKeeper
// election). Kill the reporting worker (its pid is in /bellwether) and
// another takes over at once with a higher fencing token. A second
// singleton, digest, runs a CPU-heavy task in a worker thread every 10 s
// (digest-task.js). Ctrl-C stops the workers gracefully.
//
// BELLWETHER_ADAPTER=off runs the same app without the plugin (the
// throughput benchmark's baseline).
import os from 'node:os';
import Fastify from 'fastify';
import { ZkSession, singleton } from 'bellwether';
import bellwether from 'bellwether/fastify';
import { worker } from 'bellwether/worker';

const port = Number(process.env.PORT ?? 3000);
const name = `worker ${worker.index ?? '-'} (pid ${process.pid})`;

// A latent ZooKeeper session: the plugin starts it and, on close, closes it.
// The plugin waits for it to connect (up to its connectTimeout, 15 s), longer
// than Fastify's default pluginTimeout (10 s): raise that, so that an
// unreachable ensemble is reported as BW_ERR_ZK_CONNECT_TIMEOUT.
const zk = process.env.ZK_CONNECT ? new ZkSession({ connect: process.env.ZK_CONNECT }) : undefined;
const app = Fastify({ pluginTimeout: 20_000 });

app.get('/', async () => ({ hello: 'world', worker: worker.index }));

if (process.env.BELLWETHER_ADAPTER !== 'off') {
  const reporter = singleton({
    name: 'health-reporter',
    ...(zk ? { scope: 'host+cluster', zk, data: os.hostname() } : {}),
    run: ({ signal, token }) => {
      console.log(`${name}: elected, fencing token ${token}`);
      let reports = 0;
      const timer = setInterval(() => {
        reports += 1;
        const load = os.loadavg()[0].toFixed(2);
        const rss = (process.memoryUsage().rss / 2 ** 20).toFixed(0);
        console.log(`${name} health report #${token}.${reports}: load ${load}, rss ${rss} MiB`);
      }, 1000);
      signal.addEventListener('abort', () => clearInterval(timer), { once: true });
    },
  });
  reporter.on('error', (err) => console.error(`${name}: ${err.code}: ${err.message}`));
  // A CPU-heavy job as a task: it runs in a worker thread of the leading
  // worker every 10 s, so that worker's requests and heartbeats go on.
  const digest = singleton({
    name: 'digest',
    ...(zk ? { scope: 'host+cluster', zk, data: os.hostname() } : {}),
    task: new URL('./digest-task.js', import.meta.url),
    every: 10_000,
  });
  digest.on('error', (err) => console.error(`${name}: ${err.code}: ${err.message}`));
  await app.register(bellwether, { singletons: [reporter, digest], ...(zk ? { zk } : {}), metrics: true });
}

// Graceful stop: the worker drains the server by itself (in-flight requests
// finish, keep-alive connections close after their next response); then the
// plugin closes the app, and its onClose hook the singleton (and the session).
// Listening marks the worker ready (the plugin's onListen hook tells the supervisor).
await app.listen({ port, host: '127.0.0.1' });
