/**
 * The supervisor bench's baseline: a plain node:cluster primary, what users
 * write without a supervisor library. argv: workers. env: PORT for the app.
 * Forks `workers` plain-app workers, re-forks a slot at once on 'exit', and
 * prints JSON lines: {"event":"listening","pid":<worker pid>,"index":i} when
 * a worker listens, {"event":"exit",...} when one exits. stdin keeps it up.
 */
import cluster, { type Worker } from 'node:cluster';

const workers = Number(process.argv[2] ?? 4);
if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be a positive integer, got ${process.argv[2]}`);

const line = (fields: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(fields)}\n`);

cluster.setupPrimary({ exec: new URL('./plain-app.js', import.meta.url).pathname });

function fork(index: number): void {
  const worker: Worker = cluster.fork({ WORKER_INDEX: String(index) });
  const pid = worker.process.pid;
  worker.on('listening', () => line({ event: 'listening', pid, index }));
  worker.once('exit', (code: number | null, signal: string | null) => {
    line({ event: 'exit', pid, index, code, signal });
    fork(index);
  });
}

for (let index = 0; index < workers; index++) fork(index);
process.stdin.resume();
