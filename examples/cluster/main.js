// A clustered app whose health reporter runs in exactly one of 4 workers.
//
//   npm run demo                 # until Ctrl-C
//   npm run demo -- --seconds 12 # stop by itself
//
// To show a takeover, the primary SIGKILLs the reporting worker every 4 s
// (--calm turns that off) and forks a replacement with the same index.
// Needs no server: the job is guarded by flock(2) on a file in the lock
// directory. Run `flock <lockDir>/health-reporter.lock sleep 10` in another
// shell to pause the job on this host for 10 s.
import cluster from 'node:cluster';
import os from 'node:os';
import { defaultLockDir, singleton } from 'bellwether';

const WORKERS = 4;
const args = process.argv.slice(2);
const seconds = args.includes('--seconds') ? Number(args[args.indexOf('--seconds') + 1]) : undefined;
const chaos = !args.includes('--calm');

if (cluster.isPrimary) {
  console.log(`primary ${process.pid}: ${WORKERS} workers, lock directory ${defaultLockDir()}`);
  const leaders = new Map(); // worker id -> index, for the one reporting
  const fork = (index) => {
    const worker = cluster.fork({ WORKER_INDEX: String(index) });
    worker.on('message', (message) => {
      if (message === 'leader') leaders.set(worker.id, index);
    });
    worker.on('exit', (code, signal) => {
      leaders.delete(worker.id);
      if (stopping) return;
      console.log(`primary: worker ${index} (pid ${worker.process.pid}) exited (${signal ?? code}); forking a replacement`);
      fork(index);
    });
  };
  let stopping = false;
  for (let index = 0; index < WORKERS; index++) fork(index);

  const killer = chaos
    ? setInterval(() => {
        const [id, index] = [...leaders.entries()][0] ?? [];
        if (id === undefined) return;
        console.log(`primary: SIGKILL the reporting worker ${index} (pid ${cluster.workers[id]?.process.pid})`);
        cluster.workers[id]?.process.kill('SIGKILL');
      }, 4000)
    : undefined;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    clearInterval(killer);
    console.log('primary: stopping');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (seconds) setTimeout(stop, seconds * 1000);
} else {
  const index = process.env.WORKER_INDEX;
  const reporter = singleton({
    name: 'health-reporter',
    run: ({ signal, token }) => {
      process.send?.('leader');
      console.log(`worker ${index} (pid ${process.pid}): elected, fencing token ${token}`);
      const timer = setInterval(() => {
        const load = os.loadavg()[0].toFixed(2);
        const rss = (process.memoryUsage().rss / 2 ** 20).toFixed(0);
        console.log(`worker ${index} (pid ${process.pid}) health report #${token}: load ${load}, rss ${rss} MiB`);
      }, 1000);
      signal.addEventListener('abort', () => clearInterval(timer), { once: true });
    },
  });
  reporter.on('error', (err) => console.error(`worker ${index}: ${err.code}: ${err.message}`));
  await reporter.start();
  // The rest of the worker's life: an app would serve requests here. This
  // one just stays up until told to stop.
  const keepUp = setInterval(() => {}, 60_000);
  process.on('SIGTERM', async () => {
    clearInterval(keepUp);
    await reporter.close();
    process.exit(0);
  });
}
