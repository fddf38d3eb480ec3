/**
 * The supervisor bench's plain worker: test/fixtures/http-app without
 * bellwether. An HTTP server on PORT (shared through node:cluster) that
 * answers with its index (WORKER_INDEX from plain-cluster-primary) and pid.
 *   /slow?ms=N       answers after N ms
 *   /block?ms=N      blocks the event loop for N ms, then answers
 *   /unhealthy?code=C  answers (plain node:cluster has no health reports)
 * CRASH_INDEX=i makes worker i exit with code 1 at boot, every time.
 * SIGTERM or the primary's disconnect closes the server; the process then exits.
 */
import cluster from 'node:cluster';
import http from 'node:http';

const index = process.env['WORKER_INDEX'] === undefined ? undefined : Number(process.env['WORKER_INDEX']);
if (process.env['CRASH_INDEX'] !== undefined && String(index) === process.env['CRASH_INDEX']) {
  process.exit(1);
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const ms = Number(url.searchParams.get('ms') ?? 0);
  const answer = (): void => {
    response.setHeader('connection', 'close');
    response.end(JSON.stringify({ index, pid: process.pid }));
  };
  if (url.pathname === '/slow') setTimeout(answer, ms);
  else if (url.pathname === '/block') {
    const until = Date.now() + ms;
    while (Date.now() < until);
    answer();
  } else answer();
});
process.on('SIGTERM', () => {
  server.close();
  cluster.worker?.disconnect();
});
server.listen(Number(process.env['PORT']), '127.0.0.1');
