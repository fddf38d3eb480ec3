/**
 * proper-lockfile contender with its defaults (stale 10 s, update 5 s); a
 * waiter has to retry, as users do: forever, 100 ms to 1 s apart.
 * argv: lockDir name
 */
import path from 'node:path';
import lockfile from 'proper-lockfile';

const [lockDir, name] = process.argv.slice(2) as [string, string];
process.stdout.write('ready\n');
await lockfile.lock(path.join(lockDir, name), { realpath: false, retries: { forever: true, minTimeout: 100, maxTimeout: 1000 } });
process.stdout.write('acquired\n');
setInterval(() => {}, 60_000);
