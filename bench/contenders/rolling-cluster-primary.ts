/**
 * The restarts bench's baseline: a plain node:cluster primary with the
 * rolling restart users write by hand. argv: workers, kill timeout (ms).
 * env: PORT for the app. On SIGHUP it replaces the workers one at a time:
 * fork the new one, wait for its 'listening', then disconnect the old one
 * (its server closes) and wait for its exit, with SIGKILL after the kill
 * timeout (a worker holding keep-alive connections does not exit by itself:
 * the disconnect closes the listening socket, not the connections).
 * Prints JSON lines: listening, exit, killed (the timeout fired), restarted.
 */
import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';

const workers = Number(process.argv[2] ?? 2);
const killTimeoutMs = Number(process.argv[3] ?? 2000);
if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be a positive integer, got ${process.argv[2]}`);
if (!Number.isInteger(killTimeoutMs) || killTimeoutMs < 1) throw new Error(`kill timeout must be a positive integer, got ${process.argv[3]}`);
/** Bound on a new worker listening: past it the rollout stops and the old worker keeps serving. */
const LISTEN_TIMEOUT_MS = 10_000;

const line = (fields: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(fields)}\n`);

cluster.setupPrimary({ exec: new URL('./keepalive-app-plain.js', import.meta.url).pathname });

const slots: Worker[] = [];

function fork(index: number): Worker {
  const worker = cluster.fork();
  const pid = worker.process.pid;
  // A send to a worker whose channel just closed is reported here: never crash the primary.
  worker.on('error', () => {});
  worker.on('listening', () => line({ event: 'listening', pid, index }));
  worker.once('exit', (code: number | null, signal: string | null) => line({ event: 'exit', pid, index, code, signal }));
  return worker;
}

/** Resolves true once the worker listens, false if it exits or the timeout passes first. */
async function listening(worker: Worker): Promise<boolean> {
  const timeout = AbortSignal.timeout(LISTEN_TIMEOUT_MS);
  try {
    return await Promise.race([once(worker, 'listening', { signal: timeout }).then(() => true), once(worker, 'exit', { signal: timeout }).then(() => false)]);
  } catch {
    return false;
  }
}

let rolling = false;
/** A SIGHUP during a rollout: one more round after it, so every worker ends on the newest code. */
let rollAgain = false;

async function rollingRestart(): Promise<void> {
  if (rolling) {
    rollAgain = true;
    return;
  }
  rolling = true;
  do {
    rollAgain = false;
    for (let index = 0; index < slots.length; index++) {
      const old = slots[index]!;
      const next = fork(index);
      if (!(await listening(next))) {
        next.process.kill('SIGKILL');
        line({ event: 'error', message: `the replacement of worker ${index} did not listen; rollout stopped` });
        rolling = false;
        return;
      }
      slots[index] = next;
      if (old.isDead()) continue;
      const exited = once(old, 'exit');
      const timer = setTimeout(() => {
        line({ event: 'killed', pid: old.process.pid, index });
        old.process.kill('SIGKILL');
      }, killTimeoutMs);
      old.disconnect();
      await exited;
      clearTimeout(timer);
    }
    line({ event: 'restarted' });
  } while (rollAgain);
  rolling = false;
}

for (let index = 0; index < workers; index++) slots.push(fork(index));
process.on('SIGHUP', () => void rollingRestart());
