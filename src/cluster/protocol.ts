import type { DemotionReason } from '../singleton/singleton.js';
import type { Acl } from '../zk/acl.js';
import type { DigestAuth } from '../zk/options.js';

/**
 * What the primary and its workers tell each other. Environment variables
 * carry what a worker needs at boot; IPC messages (cluster's channel) carry
 * the rest. Every message has a `bellwether` field, so messages of the
 * application on the same channel are left alone.
 */
export const ENV = {
  /** The worker's stable index, 0..N-1. */
  index: 'BELLWETHER_WORKER_INDEX',
  /** The primary's pid: a worker whose parent is no longer this exits (orphan fencing). */
  primaryPid: 'BELLWETHER_PRIMARY_PID',
  /** Heartbeat interval in ms. */
  heartbeat: 'BELLWETHER_HEARTBEAT_MS',
  /** The user's entry script, which the worker bootstrap imports. */
  entry: 'BELLWETHER_ENTRY',
  /** JSON of the primary's ZkSession settings, for the worker's own session; its credentials come over IPC (ZkAuthMessage), never here. */
  zkSettings: 'BELLWETHER_ZK_SETTINGS',
  /** ms between the primary's SIGTERM to a worker and its SIGKILL: the budget of a stop on SIGTERM. */
  killTimeout: 'BELLWETHER_KILL_TIMEOUT_MS',
} as const;

export type WorkerMessage =
  /** The worker serves (also inferred from cluster's `listening`, unless the worker deferred it). */
  | { bellwether: 'ready' }
  /** From now on cluster's `listening` does not make this worker ready: only 'ready' does (worker.deferReady()). */
  | { bellwether: 'defer-ready' }
  /**
   * Sent from the worker's event loop every heartbeat: 0 healthy, > 0 an
   * unhealthy code; `leads`: how many singleton leases the worker holds (also
   * sent at once when that changes), so a rolling restart replaces leaders last.
   */
  | { bellwether: 'heartbeat'; code: number; leads?: number }
  /** Answer to 'stopping': its singletons contend no more. */
  | { bellwether: 'stopping-ack' };

/**
 * Metrics of the whole cluster for a scrape: a worker asks (one request under
 * way per board), the primary collects from every worker that has metrics on
 * (one collection at a time, its text shared for a second) and answers.
 * Counters are the primary's, per slot, so that they outlive the workers that count.
 */
export type MetricsMessage =
  /** A board of the worker serves metrics from now on (its singletons, whether it has a session): the primary collects from it. */
  | { bellwether: 'metrics-on'; board: string; singletons: string[]; zk: boolean }
  /** It no longer does (it closed): a scrape does not wait for it. */
  | { bellwether: 'metrics-off'; board: string }
  /** Increases of a singleton's counts in the worker (elections, runs, failed runs, step-downs by reason) since it last said. */
  | { bellwether: 'metrics-event'; event: 'counts'; singleton: string; elected: number; runs: number; failures: number; stepDowns?: Record<DemotionReason, number> }
  /** Expiries of the worker's session since it last said (and its suspensions: a primary of an earlier version reads `count` only). */
  | { bellwether: 'metrics-event'; event: 'expiries'; count: number; suspensions?: number }
  /**
   * Sent by the worker's runtime for every singleton, metrics on or not: a term of `singleton`, fenced
   * `fence` (a decimal bigint), begins (`leading`) or ends (its job has settled). The primary measures
   * handover gaps between its workers from these, as they reach it.
   */
  | { bellwether: 'metrics-term'; singleton: string; fence: string; leading: boolean }
  | { bellwether: 'metrics-request'; id: string }
  | { bellwether: 'metrics-collect'; id: string }
  | { bellwether: 'metrics-report'; id: string; board: string; metrics: unknown[] }
  | { bellwether: 'metrics-response'; id: string; body: string | null };

export function isMetricsMessage(message: unknown): message is MetricsMessage {
  const kind = (message as { bellwether?: unknown } | null)?.bellwether;
  return typeof kind === 'string' && kind.startsWith('metrics-');
}

/**
 * A `host+cluster` singleton under a Supervisor with `zk`: the primary holds
 * the host's fleet ballot (seed 000: the master holds the connection), and
 * the worker holding the host lock runs the job while the primary's lease
 * lasts. `election` is the election's directory (`<root>/<name>`); `hold`
 * numbers one holding of the host lock in the worker, so that an answer to an
 * earlier holding is never taken for the current one.
 */
export type FleetMessage =
  /** Worker: I hold the host lock of this election (host lock generation `generation`); vote for the host if you do not. */
  | { bellwether: 'fleet-hold'; election: string; name: string; root: string; data: string; stepDownAfter?: number; acl?: Acl; hold: number; generation: number }
  /** Worker: I no longer hold it (the job has stopped). */
  | { bellwether: 'fleet-release'; election: string; hold: number }
  /**
   * Primary: the host leads in term `term` (the ballot's czxid, decimal), and
   * may go on for `remaining` ms from `sentAt` (the primary's wall clock, ms):
   * the step-down deadline less the session's silence. Sent again while it lasts.
   */
  | { bellwether: 'fleet-lease'; election: string; hold: number; term: string; remaining: number; sentAt: number }
  /** Primary: the host no longer leads (stepped down, expired, resigned): stop now. */
  | { bellwether: 'fleet-revoke'; election: string; hold: number }
  /** Primary: ZooKeeper (or the acl) refused the host's ballot for good (`code`, a BW_ERR_*, and why): stop contending. */
  | { bellwether: 'fleet-refused'; election: string; hold: number; code: string; message: string };

export function isFleetMessage(message: unknown): message is FleetMessage {
  const kind = (message as { bellwether?: unknown } | null)?.bellwether;
  return typeof kind === 'string' && kind.startsWith('fleet-');
}

/**
 * The primary's ZooKeeper credentials, which never travel in the
 * environment (every process's initial environment stays readable in
 * /proc/<pid>/environ): a worker's session starting with `{ scheme:
 * 'from-primary' }` asks, the primary answers that worker alone. Asked, not
 * pushed at the fork: a message that reaches a worker before its listener
 * exists is lost. `id` matches the answer to its request.
 */
export type ZkAuthMessage = { bellwether: 'zk-auth-request'; id: string } | { bellwether: 'zk-auth'; id: string; auth: DigestAuth[] };

export function isZkAuthMessage(message: unknown): message is ZkAuthMessage {
  const kind = (message as { bellwether?: unknown } | null)?.bellwether;
  return (kind === 'zk-auth-request' || kind === 'zk-auth') && typeof (message as { id?: unknown }).id === 'string';
}

export type PrimaryMessage =
  /** Stop gracefully: drain HTTP servers, run onShutdown callbacks, exit; SIGKILL follows `within` ms after this message. */
  | { bellwether: 'shutdown'; within?: number }
  /** Every worker is about to stop: contend for nothing more (answered with 'stopping-ack'). */
  | { bellwether: 'stopping' };

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  const kind = (message as { bellwether?: unknown } | null)?.bellwether;
  return kind === 'ready' || kind === 'defer-ready' || kind === 'heartbeat' || kind === 'stopping-ack';
}

export function isPrimaryMessage(message: unknown): message is PrimaryMessage {
  const kind = (message as { bellwether?: unknown } | null)?.bellwether;
  return kind === 'shutdown' || kind === 'stopping';
}

/** Exit code of a worker that found its primary gone (and of `bellwether start --stop-with-parent` whose parent is gone). */
export const ORPHAN_EXIT_CODE = 70;

/** Exit code of `bellwether start` once every worker slot was given up (crash loop). */
export const GIVEN_UP_EXIT_CODE = 4;

/** How often a worker checks that its primary, or a primary with `stopWithParent` its parent, is still its parent. */
export const PARENT_CHECK_MS = 250;
