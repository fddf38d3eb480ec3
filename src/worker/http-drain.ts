/**
 * Graceful stop of HTTP servers under keep-alive load, without racing the
 * client. `server.close()` alone is not enough: on Node >= 19 and on Bun it
 * closes every idle keep-alive connection at once, and a client that is
 * sending its next request on one of them at that moment sees the connection
 * reset under a request it already sent (wrk counts a read error).
 *
 * Draining here means:
 * - stop accepting (the listener closes; idle connections stay open);
 * - every response not yet started, and every later one, says
 *   `Connection: close`, so the server closes each connection right after a
 *   response the client knows to be its last;
 * - a connection with nothing in flight is closed once it has stayed idle for
 *   the idle grace: a client that keeps it busy gets its `Connection: close`
 *   response well before;
 * - whatever is still open at the deadline is destroyed;
 * - an upgraded connection (WebSocket) is left to the app.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';

/** A server this module drains: what `http.createServer()` and `https.createServer()` return. */
export type HttpServer = http.Server | https.Server;

export interface DrainOptions {
  /** Milliseconds from now after which every connection left is destroyed. */
  timeout: number;
  /** How long a connection must stay idle before it is closed. Default IDLE_GRACE_MS. */
  idleGrace?: number;
}

/** Long beside the gap between a busy client's response and its next request (microseconds on loopback, a round trip elsewhere). */
export const IDLE_GRACE_MS = 500;
/** How often a draining server looks for connections idle past the grace. */
const SWEEP_MS = 50;

/**
 * What Node's and Bun's http servers keep on each socket: the response being
 * served while a request is in flight, and the parser, null once the
 * connection was upgraded (WebSocket) and is no longer HTTP.
 */
type ServingSocket = net.Socket & { _httpMessage?: http.ServerResponse | null; parser?: unknown };

/** A server's open connections; `emptied`, set by a drain, runs when the last one closes. */
type Connections = Set<ServingSocket> & { emptied?: () => void };
const CONNECTIONS = Symbol('bellwether.httpConnections');
type Tracked = HttpServer & { [CONNECTIONS]?: Connections };

/**
 * Starts counting the server's connections (idempotent). Call it before the
 * server accepts: a connection accepted before is not waited for.
 */
export function trackConnections(server: HttpServer): void {
  const tracked = server as Tracked;
  if (tracked[CONNECTIONS]) return;
  const connections: Connections = new Set<ServingSocket>();
  tracked[CONNECTIONS] = connections;
  // TLS servers serve HTTP on the TLS socket, which is the one that carries `_httpMessage`.
  const event = isTls(server) ? 'secureConnection' : 'connection';
  server.on(event, (socket: ServingSocket) => {
    connections.add(socket);
    socket.once('close', () => {
      connections.delete(socket);
      if (connections.size === 0) connections.emptied?.();
    });
  });
}

/** Drains the server (see the module comment). Resolves once every tracked connection is gone; never rejects. */
export function drainServer(server: HttpServer, options: DrainOptions): Promise<void> {
  const deadline = performance.now() + Math.max(0, options.timeout);
  return drainServerUntil(server, () => deadline, options.idleGrace);
}

const DRAINING = Symbol('bellwether.httpDraining');
type Draining = HttpServer & { [DRAINING]?: Promise<void> };

/**
 * @internal drainServer() with a deadline (a performance.now() time) read at
 * every sweep, so that the caller may move it. A server already draining
 * returns that drain.
 */
export function drainServerUntil(server: HttpServer, deadline: () => number, idleGrace = IDLE_GRACE_MS): Promise<void> {
  const draining = server as Draining;
  if (draining[DRAINING]) return draining[DRAINING];
  trackConnections(server);
  const connections = (server as Tracked)[CONNECTIONS]!;
  const lastResponse = (response: http.ServerResponse): void => {
    if (!response.headersSent) response.setHeader('Connection', 'close');
  };
  // Before the app's own listeners: the header is set before any handler answers. Left in place:
  // a request still being parsed now gets its last response after the drain has resolved.
  server.prependListener('request', (_request: http.IncomingMessage, response: http.ServerResponse) => lastResponse(response));
  for (const socket of connections) {
    if (socket._httpMessage) lastResponse(socket._httpMessage);
  }
  stopAccepting(server);

  draining[DRAINING] = new Promise((resolve) => {
    const idle = new Map<ServingSocket, { since: number; bytesRead: number }>();
    const finish = (): void => {
      clearInterval(sweep);
      connections.emptied = undefined;
      resolve();
    };
    const sweepIdle = (): void => {
      const now = performance.now();
      if (now >= deadline()) {
        for (const socket of connections) socket.destroy();
        // Not counted yet (a TLS handshake under way): the server's own list.
        server.closeAllConnections?.();
        return finish();
      }
      for (const socket of connections) {
        if (socket.parser === null && !socket.destroyed) {
          // Upgraded: the app's protocol now, closed by the app, neither waited for nor cut here.
          connections.delete(socket);
          continue;
        }
        const seen = idle.get(socket);
        // Busy: a response in flight, or bytes of a request still arriving (its headers are not complete).
        if (socket._httpMessage || (seen !== undefined && socket.bytesRead !== seen.bytesRead)) {
          idle.delete(socket);
          continue;
        }
        if (seen === undefined) idle.set(socket, { since: now, bytesRead: socket.bytesRead });
        else if (now - seen.since >= idleGrace) socket.destroy();
      }
      if (connections.size === 0) finish();
    };
    // Never the reason the process stays up: open connections are. So the drain ends as the last
    // one closes (destroyed by a sweep, or closed by its client), not at a next sweep that may never
    // come: with nothing else to wait for, the process would exit with the drain unsettled.
    const sweep = setInterval(sweepIdle, SWEEP_MS);
    sweep.unref();
    connections.emptied = finish;
    sweepIdle();
  });
  return draining[DRAINING];
}

/**
 * `server.close()` without its sweep of idle connections (Node's http server
 * calls `this.closeIdleConnections()`; Bun's calls it on the Bun server
 * behind it): the listener closes, every connection stays until it ends.
 */
function stopAccepting(server: HttpServer): void {
  const restore = [server, bunServerBehind(server)].filter((target) => target !== undefined).map((target) => {
    const own = Object.getOwnPropertyDescriptor(target, 'closeIdleConnections');
    Object.defineProperty(target, 'closeIdleConnections', { value: () => 0, configurable: true, writable: true });
    return () => {
      if (own) Object.defineProperty(target, 'closeIdleConnections', own);
      else delete (target as { closeIdleConnections?: unknown }).closeIdleConnections;
    };
  });
  try {
    // ERR_SERVER_NOT_RUNNING (never listened, or closed already) comes to the callback: nothing to stop then.
    server.close(() => {});
  } finally {
    for (const undo of restore) undo();
  }
  // The app's own close() from now on (in onShutdown, or Fastify's app.close()) is part of
  // this stop, not an error: its callback runs once the server is closed, without
  // ERR_SERVER_NOT_RUNNING, and 'close' comes again if it came already (as on Node; Bun emits it once).
  let closed = false;
  server.once('close', () => (closed = true));
  Object.defineProperty(server, 'close', {
    configurable: true,
    writable: true,
    value(this: HttpServer, callback?: (err?: Error) => void): HttpServer {
      if (typeof callback === 'function') this.once('close', () => callback());
      if (closed) process.nextTick(() => this.emit('close'));
      return this;
    },
  });
}

/** Bun's node:http server keeps its Bun.serve() server under an internal symbol; undefined on Node. */
function bunServerBehind(server: HttpServer): object | undefined {
  if (!('Bun' in globalThis)) return undefined;
  for (const symbol of Object.getOwnPropertySymbols(server)) {
    const value = (server as unknown as Record<symbol, unknown>)[symbol];
    if (symbol.description === '::bunternal::' && value !== null && typeof value === 'object' && 'stop' in value) return value;
  }
  return undefined;
}

function isTls(server: HttpServer): boolean {
  return server instanceof https.Server || typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function';
}

const LISTEN_HOOKED = Symbol.for('bellwether.httpListenHooked.v1');

/**
 * Calls `onListen(server)` for every http and https server that starts
 * listening from now on in this process, before it accepts anything (the
 * supervised worker's runtime drains them on a graceful stop). Idempotent.
 */
export function onHttpListen(onListen: (server: HttpServer) => void): void {
  for (const prototype of new Set<object>([http.Server.prototype, https.Server.prototype])) {
    const original = (prototype as { listen: (...args: unknown[]) => unknown }).listen;
    if ((original as { [LISTEN_HOOKED]?: boolean })[LISTEN_HOOKED]) continue;
    const listen = function (this: HttpServer, ...args: unknown[]): unknown {
      onListen(this);
      return original.apply(this, args);
    };
    Object.defineProperty(listen, LISTEN_HOOKED, { value: true });
    // An own property of http.Server.prototype (Node inherits net.Server's): other net servers are left alone.
    Object.defineProperty(prototype, 'listen', { value: listen, configurable: true, writable: true });
  }
}
