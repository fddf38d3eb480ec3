/**
 * The restarts bench's app, the same code under every contender: GET
 * anything -> 200 "ok" with keep-alive (Node's HTTP/1.1 default), on PORT at
 * 127.0.0.1, shared between the workers through node:cluster. No shutdown
 * code here: how a worker stops is what the contenders differ in.
 */
import http from 'node:http';

export function serve(onListening: () => void = () => {}): http.Server {
  const server = http.createServer((_request, response) => {
    response.setHeader('content-type', 'text/plain');
    response.end('ok');
  });
  server.listen(Number(process.env['PORT']), '127.0.0.1', onListening);
  return server;
}
