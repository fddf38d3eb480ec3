// An Express app for the prefork supervisor: `npm run example:express`
// (= node dist/cli.js start examples/express/server.js --workers 4).
//
// Every worker serves GET / on PORT (default 3000, host 127.0.0.1, shared by
// the workers) behind bellwether's router: /healthz, /readyz, /bellwether and
// /metrics (one scrape shows every worker). Exactly one worker runs the
// health reporter, a singleton that logs a report every second: one per host
// with flock(2), or, with ZK_CONNECT=host:port[,...], one per fleet (scope
// 'host+cluster': the host's lock holder stands in a ZooKeeper election).
// Kill the reporting worker (its pid is in /bellwether) and another takes
// over at once with a higher fencing token. Ctrl-C stops the workers
// gracefully.
//
// INTERNAL_PORT=9464 keeps /bellwether and /metrics (pids, singleton names,
// fencing tokens, ZooKeeper session ids) off the app's port: they are served
// on a second listener bound to 127.0.0.1:INTERNAL_PORT, and the app's port
// serves the app, /healthz and /readyz only.
//
// BELLWETHER_ADAPTER=off runs the same app without the router (the
// throughput benchmark's baseline).
import http from 'node:http';
import os from 'node:os';
import express from 'express';
import { ZkSession, singleton } from 'bellwether';
import { bellwether } from 'bellwether/express';
import { worker } from 'bellwether/worker';

const port = Number(process.env.PORT ?? 3000);
const host = '127.0.0.1';
const name = `worker ${worker.index ?? '-'} (pid ${process.pid})`;
const app = express();

if (process.env.BELLWETHER_ADAPTER !== 'off') {
  // A latent ZooKeeper session: the router starts it with the singleton and closes it with the app.
  const zk = process.env.ZK_CONNECT ? new ZkSession({ connect: process.env.ZK_CONNECT }) : undefined;
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

  const internalPort = process.env.INTERNAL_PORT ? Number(process.env.INTERNAL_PORT) : undefined;
  const router = bellwether({
    singletons: [reporter],
    zk,
    metrics: true,
    // With an internal port: not on the app's port (metrics are still collected, for the listener below).
    ...(internalPort ? { paths: { status: false, metrics: false } } : {}),
  });
  app.use(router);
  app.get('/', (_req, res) => res.json({ hello: 'world', worker: worker.index }));
  // Starts the session and the singleton (rejects if they cannot start: the
  // worker exits and the supervisor retries), marks the worker ready once it
  // listens, and on the supervisor's graceful stop (once the worker has
  // drained the server: in-flight requests finish, keep-alive connections
  // close after their next response) closes the singleton and the session.
  await router.attach(app.listen(port, host));
  if (internalPort) {
    // Loopback only: for a Prometheus agent or an operator on this host. attach() drains it on a stop too.
    const internal = http.createServer((req, res) => {
      res.setHeader('Cache-Control', 'no-store');
      if (req.url === '/bellwether') {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(router.board.snapshot()));
      } else if (req.url === '/metrics') {
        // Not an async handler: a rejection there would be unhandled and end the worker.
        router.board.metrics().then(
          (metrics) => {
            res.setHeader('Content-Type', metrics?.contentType ?? 'text/plain');
            res.statusCode = metrics ? 200 : 503;
            res.end(metrics?.body ?? 'metrics need prom-client');
          },
          () => {
            res.statusCode = 500;
            res.end('metrics collection failed');
          },
        );
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await router.attach(internal.listen(internalPort, '127.0.0.1'));
  }
} else {
  // The baseline: no router in the request path, no singleton; readiness by
  // hand. The supervised worker drains the server on a graceful stop by itself.
  app.get('/', (_req, res) => res.json({ hello: 'world', worker: worker.index }));
  app.listen(port, host, () => worker.ready());
}
