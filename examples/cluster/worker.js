// Each of the 4 workers run by `npm run demo`
// (= node dist/cli.js start examples/cluster/worker.js --workers 4).
//
// Exactly one worker runs the health reporter: a host-scope singleton on
// flock(2), no server needed. To show a takeover, the reporting worker
// SIGKILLs itself after 4 reports (DEMO_CALM=1 turns that off); another
// worker takes over at once with a higher fencing token, and the supervisor
// forks a replacement with the same index. Ctrl-C stops everything
// gracefully. Run `flock <lockDir>/health-reporter.lock sleep 10` in another
// shell to pause the job on this host for 10 s.
import os from 'node:os';
import { defaultLockDir, singleton } from 'bellwether';
import { worker } from 'bellwether/worker';

const name = `worker ${worker.index} (pid ${process.pid})`;
const reporter = singleton({
  name: 'health-reporter',
  run: ({ signal, token }) => {
    console.log(`${name}: elected, fencing token ${token} (lock in ${defaultLockDir()})`);
    let reports = 0;
    const timer = setInterval(() => {
      reports += 1;
      const load = os.loadavg()[0].toFixed(2);
      const rss = (process.memoryUsage().rss / 2 ** 20).toFixed(0);
      console.log(`${name} health report #${token}.${reports}: load ${load}, rss ${rss} MiB`);
      if (reports === 4 && process.env.DEMO_CALM !== '1') {
        console.log(`${name}: crashing on purpose (SIGKILL) to show the takeover`);
        process.kill(process.pid, 'SIGKILL');
      }
    }, 1000);
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  },
});
reporter.on('error', (err) => console.error(`${name}: ${err.code}: ${err.message}`));
await reporter.start();

// The rest of a worker's life: an app would serve requests here. This one
// stays up until the supervisor stops it.
const keepUp = setInterval(() => {}, 60_000);
worker.onShutdown(async () => {
  clearInterval(keepUp);
  await reporter.close();
});
worker.ready();
