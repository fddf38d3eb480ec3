/** fs-ext async flock contender: prints "stamp <ns>" (the monotonic clock) and "acquired" once flock(2) returns. argv: lockDir name */
import fs from 'node:fs';
import path from 'node:path';
import fsExt from 'fs-ext';
import { monotonicNs } from './monotonic.js';

const [lockDir, name] = process.argv.slice(2) as [string, string];
const fd = fs.openSync(path.join(lockDir, `${name}.lock`), 'a+');
fsExt.flock(fd, 'ex', (err) => {
  if (err) throw err;
  process.stdout.write(`stamp ${monotonicNs()}\nacquired\n`);
  setInterval(() => {}, 60_000);
});
process.stdout.write('ready\n');
