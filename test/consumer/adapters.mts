// A user's Express and Fastify apps on `bellwether/express` and
// `bellwether/fastify` (with `bellwether`), compiled and run like core.mts.
import express from 'express';
import Fastify from 'fastify';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { singleton, type BellwetherStatus } from 'bellwether';
import { bellwether, type BellwetherExpressOptions, type BellwetherRouter } from 'bellwether/express';
import bellwetherPlugin, { type BellwetherFastifyOptions } from 'bellwether/fastify';

// Express: the router is middleware, attach() takes what app.listen() returns.
const expressOptions: BellwetherExpressOptions = {
  singletons: [singleton({ name: 'consumer-express', run: () => undefined })],
  metrics: true,
  paths: { status: '/status' },
};
const router: BellwetherRouter = bellwether(expressOptions);
const app = express();
app.use(router);
app.get('/', (_req, res) => void res.json({ hello: 'express' }));
const server = app.listen(0, '127.0.0.1');
await router.attach(server);
if (!server.listening) await once(server, 'listening');
const { port } = server.address() as AddressInfo;
const get = async (path: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, text: await res.text() };
};
const fromExpress = {
  readyz: await get('/readyz'),
  status: JSON.parse((await get('/status')).text) as BellwetherStatus,
  metrics: (await get('/metrics')).text.includes('bellwether_singleton_leader'),
  app: (await get('/')).text,
};
await router.close();

// Fastify: the plugin's options are checked against its type, and the
// instance has `bellwether` (the board) through the plugin's augmentation.
const fastifyOptions: BellwetherFastifyOptions = {
  singletons: [singleton({ name: 'consumer-fastify', run: () => undefined })],
  readiness: 'serving',
};
const fastify = Fastify();
await fastify.register(bellwetherPlugin, fastifyOptions);
await fastify.ready();
const healthz = await fastify.inject({ method: 'GET', url: '/healthz' });
const snapshot: BellwetherStatus = fastify.bellwether.snapshot();
await fastify.close();

function wrongUses(): void {
  // @ts-expect-error readiness is 'serving' or 'serving+zk'
  bellwether({ readiness: 'zk' });
  // @ts-expect-error attach() takes a server
  void router.attach(3000);
  // @ts-expect-error the board is typed: it has no such method
  fastify.bellwether.restart();
}
void wrongUses;

console.log(
  JSON.stringify({
    entry: 'adapters',
    express: {
      readyz: fromExpress.readyz,
      singletons: fromExpress.status.singletons.map(({ name }) => name),
      metrics: fromExpress.metrics,
      app: fromExpress.app,
    },
    fastify: { healthz: { status: healthz.statusCode, body: healthz.json() as unknown }, singletons: snapshot.singletons.map(({ name }) => name) },
  }),
);
