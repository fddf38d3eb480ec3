/**
 * `bellwether/worker`: the worker side alone. It loads no ZooKeeper client,
 * so a worker that only needs readiness, liveness and graceful stop starts
 * faster and smaller than one importing all of `bellwether`.
 */
export { worker, type WorkerRuntime } from './worker.js';
export { drainServer, trackConnections, type DrainOptions, type HttpServer } from './http-drain.js';
export { ORPHAN_EXIT_CODE } from '../cluster/protocol.js';
export { BellwetherError, ErrorCodes } from '../errors.js';
