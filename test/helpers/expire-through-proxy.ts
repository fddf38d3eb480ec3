import { bounded } from './bounded.js';
import type { TcpProxy } from './tcp-proxy.js';
import { expireSession } from './zookeeper.js';

/**
 * Expires the session of a client that talks through `proxy`, with no race:
 * the proxy holds the client's traffic while the session is closed on the
 * server (a client that reconnected meanwhile would take its session back,
 * and ZkSession would restore that one first). Once the client's reconnect
 * is held at the proxy, the proxy lets it through: the server answers that
 * the session expired. Returns when it let it through (performance.now()).
 */
export async function expireThroughProxy(proxy: TcpProxy, serverPort: number, id: Buffer, password: Buffer): Promise<number> {
  const before = proxy.connections;
  const reconnectHeld = new Promise<void>((resolve) => {
    proxy.tap = (chunk) => {
      if (chunk.from === 'client' && chunk.connection > before) resolve();
      return 'forward';
    };
  });
  proxy.mode = 'blackhole';
  let releasedAt: number;
  try {
    await expireSession(serverPort, id, password);
    await bounded('the client reconnecting after its session was closed', reconnectHeld, 5_000);
  } finally {
    // Passing again also when the injection failed: a caller that goes on
    // (the benchmark's next round) must not find its client cut off.
    proxy.tap = undefined;
    releasedAt = performance.now();
    proxy.mode = 'pass';
  }
  return releasedAt;
}
