import net from 'node:net';

/**
 * - pass: forward, after `delayMs`;
 * - blackhole: forward nothing either way, and accept new connections all
 *   the same: a partition TCP does not notice. What arrives meanwhile is
 *   kept and forwarded, in order, when the mode is back to 'pass' while its
 *   connection lives (as TCP would retransmit it). A connection cut meanwhile
 *   (by either side, or `drop()`) loses what it held, as a reset one would.
 */
export type ProxyMode = 'pass' | 'blackhole';

/** What a tap decides for one chunk: forward it (the mode and delay still apply), discard it, or cut its connection. */
export type ChunkAction = 'forward' | 'discard' | 'cut';

export interface Chunk {
  from: 'client' | 'server';
  data: Buffer;
  /** Which accepted connection it travels on, from 1. */
  connection: number;
}

/** One direction of one connection: chunks leave in the order they came, each once due and while the mode passes. */
class Lane {
  readonly #to: net.Socket;
  readonly #passing: () => boolean;
  readonly #queue: { data: Buffer; due: number }[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(to: net.Socket, passing: () => boolean) {
    this.#to = to;
    this.#passing = passing;
  }

  push(data: Buffer, delayMs: number): void {
    this.#queue.push({ data, due: performance.now() + delayMs });
    this.pump();
  }

  pump(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#queue.length > 0 && this.#passing() && !this.#to.destroyed) {
      const wait = this.#queue[0]!.due - performance.now();
      if (wait > 0) {
        this.#timer = setTimeout(() => this.pump(), wait);
        return;
      }
      this.#to.write(this.#queue.shift()!.data);
    }
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of one server, for fault injection:
 * `drop()` cuts every connection now (the client sees a disconnect), the
 * modes above, a delay on every chunk (a slow network), and a `tap` that sees
 * each chunk first (to act at an exact point of a conversation).
 */
export class TcpProxy {
  readonly #target: number;
  readonly #server: net.Server;
  readonly #pairs = new Map<[net.Socket, net.Socket], Lane[]>();
  #mode: ProxyMode = 'pass';
  /** Each chunk is forwarded this long after it arrived, in order. */
  delayMs = 0;
  tap: ((chunk: Chunk) => ChunkAction | undefined) | undefined;
  /** Connections accepted so far. */
  connections = 0;
  port = 0;

  /** `noDelay`: forward each chunk at once, with Nagle's algorithm off both ways (as ZooKeeper and its clients do), for timings. */
  constructor(targetPort: number, options: { noDelay?: boolean } = {}) {
    this.#target = targetPort;
    this.#server = net.createServer({ noDelay: options.noDelay ?? false }, (client) => {
      const connection = ++this.connections;
      const upstream = net.connect({ host: '127.0.0.1', port: this.#target, noDelay: options.noDelay ?? false });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      const passing = (): boolean => this.#mode === 'pass';
      const lanes = [new Lane(upstream, passing), new Lane(client, passing)];
      this.#pairs.set(pair, lanes);
      const end = (): void => {
        for (const lane of lanes) lane.clear();
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const [from, lane, side] of [
        [client, lanes[0]!, 'client'],
        [upstream, lanes[1]!, 'server'],
      ] as const) {
        from.on('data', (data) => {
          const action = this.tap?.({ from: side, data, connection }) ?? 'forward';
          if (action === 'cut') return end();
          if (action === 'forward') lane.push(data, this.delayMs);
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
    if (mode === 'pass') for (const lanes of this.#pairs.values()) for (const lane of lanes) lane.pump();
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Cuts every connection now (what they held is lost). */
  drop(): void {
    for (const [[client, upstream], lanes] of this.#pairs) {
      for (const lane of lanes) lane.clear();
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.tap = undefined;
    this.drop();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
