/**
 * The script the supervisor forks (`cluster.setupPrimary({ exec })`): starts
 * the worker runtime, then loads the user's entry script (ESM or CommonJS:
 * a dynamic import handles both).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ENV } from '../cluster/protocol.js';
// Importing it starts heartbeats and orphan fencing before any user code runs.
import { markBooted, worker } from './worker.js';

function fail(message: string): never {
  // Written synchronously: process.exit() may drop buffered pipe output (Bun).
  try {
    fs.writeSync(2, `bellwether worker ${worker.index ?? '?'} (pid ${process.pid}): ${message}\n`);
  } catch {
    // stderr is gone: the exit code still tells.
  }
  // Exit now: the IPC channel would keep a worker without code alive.
  process.exit(1);
}

const entry = process.env[ENV.entry];
// Not inherited by what the app forks (see worker.ts).
delete process.env[ENV.entry];
if (!entry) fail(`${ENV.entry} is not set: no entry script to run`);
const file = path.resolve(entry);
// The entry sees itself as the main script (`import.meta.url === pathToFileURL(process.argv[1])`).
process.argv[1] = file;
try {
  await import(pathToFileURL(file).href);
} catch (err) {
  fail(`cannot load entry script ${file}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
}
markBooted();
