import net from 'node:net';

export type ProxyMode = 'pass' | 'blackhole';

/**
 * A TCP proxy on 127.0.0.1 in front of one server, for fault injection:
 * `drop()` cuts every connection now (the client sees a disconnect), and
 * `blackhole` keeps connections (and accepts new ones) but forwards nothing
 * either way, as a network partition that TCP does not notice.
 */
export class TcpProxy {
  readonly #target: number;
  readonly #server: net.Server;
  readonly #pairs = new Set<[net.Socket, net.Socket]>();
  #mode: ProxyMode = 'pass';
  port = 0;

  constructor(targetPort: number) {
    this.#target = targetPort;
    this.#server = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: this.#target });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.#pairs.add(pair);
      const end = (): void => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        from.on('data', (chunk) => {
          if (this.#mode === 'pass') to.write(chunk);
        });
        from.on('error', end);
        from.on('close', end);
      }
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  set mode(mode: ProxyMode) {
    this.#mode = mode;
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Cuts every connection now. */
  drop(): void {
    for (const [client, upstream] of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
