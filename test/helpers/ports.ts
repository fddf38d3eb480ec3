import fs from 'node:fs';
import net from 'node:net';

const FLOOR = 10_000;

/** The low end of the kernel's ephemeral range (listen(0) and outgoing connections take ports from it). */
function ephemeralLow(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > FLOOR + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * `count` distinct ports that are free now, chosen at random below the
 * ephemeral range: a port from listen(0) can be handed to some outgoing
 * connection (a client of the suite's own servers) between the check and
 * the server's bind; these cannot, only another explicit bind could take one.
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const span = ephemeralLow() - FLOOR;
  const chosen = new Set<number>();
  for (let attempt = 0; chosen.size < count; attempt++) {
    if (attempt > 1000) throw new Error(`no ${count} free ports found on ${host}`);
    const port = FLOOR + Math.floor(Math.random() * span);
    if (!chosen.has(port) && (await bindable(port, host))) chosen.add(port);
  }
  return [...chosen];
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return (await freePorts(1, host))[0]!;
}
