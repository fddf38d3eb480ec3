/**
 * Host-lock contender: when its run starts, prints "stamp <ns>" (the
 * monotonic clock, first thing) and "acquired", then holds. argv: lockDir
 * name. BENCH_HOLDER_MIB: first make that many MiB resident (a large
 * process, whose exit takes longer).
 */
import { singleton } from 'bellwether';
import { monotonicNs } from './monotonic.js';

const [lockDir, name] = process.argv.slice(2) as [string, string];
const ballast = Buffer.allocUnsafe(Number(process.env['BENCH_HOLDER_MIB'] ?? 0) * 1024 * 1024).fill(1);
monotonicNs(); // its first call is slower (measured: 0.2-0.3 ms): not bellwether's cost
const job = singleton({
  name,
  lockDir,
  keepAlive: true,
  run: () => {
    process.stdout.write(`stamp ${monotonicNs()}\nacquired\n`);
    setInterval(() => ballast.length, 60_000); // keeps the ballast alive
  },
});
await job.start();
process.stdout.write('ready\n');
