/** Host-lock contender: prints "acquired" when its run starts, then holds. argv: lockDir name */
import { singleton } from 'bellwether';

const [lockDir, name] = process.argv.slice(2) as [string, string];
const job = singleton({
  name,
  lockDir,
  keepAlive: true,
  run: () => {
    process.stdout.write('acquired\n');
    setInterval(() => {}, 60_000);
  },
});
await job.start();
process.stdout.write('ready\n');
