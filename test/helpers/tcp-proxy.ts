import net from 'node:net';

/**
 * - pass: forward (after `delayMs`, order kept);
 * - blackhole: keep connections (and accept new ones) but forward nothing
 *   either way, as a network partition that TCP does not notice;
 * - hold: keep what arrives, in order, and forward it when the mode is set back.
 */
export type ProxyMode = 'pass' | 'blackhole' | 'hold';

/** What a tap decides for one chunk: forward it (the mode still applies), discard it, or cut its connection. */
export type ChunkAction = 'forward' | 'discard' | 'cut';

export interface Chunk {
  from: 'client' | 'server';
  data: Buffer;
  /** Which accepted connection it travels on, from 1. */
  connection: number;
}

/**
 * A TCP proxy on 127.0.0.1 in front of one server, for fault injection:
 * `drop()` cuts every connection now (the client sees a disconnect), the
 * modes above, a delay on every chunk, and a `tap` that sees each chunk
 * first (to act at an exact point of a conversation).
 */
export class TcpProxy {
  readonly #target: number;
  readonly #server: net.Server;
  readonly #pairs = new Set<[net.Socket, net.Socket]>();
  #mode: ProxyMode = 'pass';
  #held: (() => void)[] = [];
  /** Each chunk is forwarded this long after it arrived (a slow network). */
  delayMs = 0;
  tap: ((chunk: Chunk) => ChunkAction | undefined) | undefined;
  /** Connections accepted so far. */
  connections = 0;
  port = 0;

  constructor(targetPort: number) {
    this.#target = targetPort;
    this.#server = net.createServer((client) => {
      const connection = ++this.connections;
      const upstream = net.connect({ host: '127.0.0.1', port: this.#target });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.#pairs.add(pair);
      const end = (): void => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const [from, to, side] of [
        [client, upstream, 'client'],
        [upstream, client, 'server'],
      ] as const) {
        // When the last chunk of this direction is due: a delay never reorders.
        let lastDue = 0;
        from.on('data', (data) => {
          const action = this.tap?.({ from: side, data, connection }) ?? 'forward';
          if (action === 'cut') return end();
          if (action === 'discard' || this.#mode === 'blackhole') return;
          const send = (): void => void (to.destroyed ? undefined : to.write(data));
          if (this.#mode === 'hold') return void this.#held.push(send);
          const due = Math.max(performance.now() + this.delayMs, lastDue);
          lastDue = due;
          if (due <= performance.now()) send();
          else setTimeout(send, due - performance.now());
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
    if (mode === 'hold') return;
    // Held chunks go on (pass) or are lost (blackhole), in the order they came.
    const held = this.#held.splice(0);
    if (mode === 'pass') for (const send of held) send();
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
    this.tap = undefined;
    this.#held = [];
    this.drop();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
