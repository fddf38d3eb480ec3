/**
 * The tasks bench's app under `bellwether start`: a node:http server
 * answering a tiny JSON on PORT, and, from GET /start on, the job of
 * task-work.ts as JOB says:
 *   inline  a host singleton whose `run` is the job (main thread),
 *   task    a host singleton whose `task` is the job (task-burn.ts, a worker thread),
 *   none    no singleton: a timer of the job's length stands for it.
 * From /start to the job's end a 100 ms interval records how long the event
 * loop went without a turn; when the job has settled its figures are
 * appended to RECORDS as { kind: 'stats', ... }.
 */
import fs from 'node:fs';
import http from 'node:http';
import { singleton } from 'bellwether';
import { worker } from 'bellwether/worker';
import { JOB_MS, runInline } from './task-work.js';

const mode = process.env['JOB'];
const heartbeatMs = 1000;

const gaps: number[] = [];
let last = 0;
let monitor: NodeJS.Timeout | undefined;

function settled(): void {
  clearInterval(monitor);
  // The loop's turn that ends the job has not been counted by the interval yet.
  gaps.push(performance.now() - last);
  const stats = {
    kind: 'stats',
    pid: process.pid,
    // Heartbeat periods with no turn of the event loop.
    missed: gaps.reduce((sum, gap) => sum + Math.floor(gap / heartbeatMs), 0),
    maxGap: Math.max(...gaps),
  };
  fs.appendFileSync(process.env['RECORDS']!, `${JSON.stringify(stats)}\n`);
}

function start(): void {
  last = performance.now();
  monitor = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }, 100);
  if (mode === 'none') {
    fs.appendFileSync(process.env['RECORDS']!, `${JSON.stringify({ kind: 'start', token: 0, pid: process.pid, thread: 0, at: Date.now() })}\n`);
    setTimeout(settled, JOB_MS);
    return;
  }
  const job = singleton({
    name: `bench-tasks-${process.env['PORT']}`,
    lockDir: process.env['LOCK_DIR']!,
    ...(mode === 'task' ? { task: new URL('./task-burn.js', import.meta.url) } : { run: runInline }),
  });
  job.once('ran', settled);
  job.on('error', (err) => process.stderr.write(`task-app: ${err.message}\n`));
  void job.start();
}

const server = http.createServer((request, response) => {
  if (request.url === '/start' && !monitor) start();
  response.setHeader('content-type', 'application/json');
  response.end('{"ok":true}');
});
server.listen(Number(process.env['PORT']), '127.0.0.1', () => worker.ready());
