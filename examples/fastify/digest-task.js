// The `digest` singleton's task: it runs in a worker thread of the leading
// worker, every 10 s. CPU-heavy work (hashing 64 MiB, about 100 ms)
// that on the main thread would hold that worker's requests, its heartbeats
// and its ZooKeeper session; in the thread they go on. It checks
// stillLeader() between 1 MiB slices (a shared-memory read, no message
// round trip): once leadership ends it stops within a slice, and a task that
// did not would have its thread terminated after the singleton's stopTimeout.
import crypto from 'node:crypto';

export default function digest({ token, stillLeader }) {
  const started = performance.now();
  const hash = crypto.createHash('sha256');
  const slice = Buffer.alloc(2 ** 20, token % 256);
  let mebibytes = 0;
  while (mebibytes < 64 && stillLeader()) {
    hash.update(slice);
    mebibytes += 1;
  }
  const ms = (performance.now() - started).toFixed(0);
  console.log(`digest (token ${token}): ${mebibytes} MiB hashed in ${ms} ms in a worker thread: ${hash.digest('hex').slice(0, 12)}`);
}
