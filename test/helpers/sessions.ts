import type { TestContext } from 'node:test';
import { ZkSession, type ZkSessionOptions } from 'bellwether';
import { TcpProxy } from './tcp-proxy.js';
import type { ZkEnsemble } from './zookeeper.js';

/** A session closed when the test ends, whatever its outcome (2 s timeout unless given). */
export function openSession(t: TestContext, connect: string, options: Partial<ZkSessionOptions> = {}): ZkSession {
  const zk = new ZkSession({ connect, sessionTimeout: 2000, ...options });
  t.after(() => zk.close());
  return zk;
}

/** A fault-injecting proxy in front of a server port, closed when the test ends. */
export async function startProxy(t: TestContext, port: number): Promise<TcpProxy> {
  const proxy = new TcpProxy(port);
  await proxy.start();
  t.after(() => proxy.close());
  return proxy;
}

/** A session (not started) that reaches the server on `port` only through a fault proxy of its own. */
export async function throughProxy(t: TestContext, port: number, options: Partial<ZkSessionOptions> = {}): Promise<{ proxy: TcpProxy; zk: ZkSession }> {
  const proxy = await startProxy(t, port);
  return { proxy, zk: openSession(t, `127.0.0.1:${proxy.port}`, options) };
}

/**
 * Two started sessions on the ensemble's first server: `zk` through a fault
 * proxy of its own, `other` direct (to look on, or to contend, unharmed).
 */
export async function proxiedAndDirect(t: TestContext, ensemble: ZkEnsemble): Promise<{ proxy: TcpProxy; zk: ZkSession; other: ZkSession }> {
  const { proxy, zk } = await throughProxy(t, ensemble.servers[0]!.clientPort);
  const other = openSession(t, ensemble.connectString());
  await Promise.all([zk.start(), other.start()]);
  return { proxy, zk, other };
}
