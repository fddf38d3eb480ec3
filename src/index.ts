export { BellwetherError, ErrorCodes, type ErrorCode } from './errors.js';
export type { Logger } from './log/logger.js';
export {
  singleton,
  type SingletonOptions,
  type HostSingletonOptions,
  type ClusterSingletonOptions,
  type HostClusterSingletonOptions,
} from './singleton/options.js';
export { Candidate, type CandidateEvents, type CandidateOptions, type CandidateDemotion } from './election/candidate.js';
export { Observer, type ObserverEvents } from './election/observer.js';
export { DEFAULT_ELECTION_ROOT } from './election/ballots.js';
export {
  Singleton,
  type RunContext,
  type RunRecord,
  type SingletonEvents,
  type DemotionReason,
  type Backoff,
} from './singleton/singleton.js';
export type { TaskContext } from './singleton/task-thread.js';
export { defaultLockDir } from './lock/lock-dir.js';
export { ZkSession, SESSION_EXPIRED_EXIT_CODE, type ZkSessionEvents, type ZkSessionState, type CreateMode, type NodeChange } from './zk/session.js';
export type { Acl, AclName, AclEntry, AclScheme } from './zk/acl.js';
export type { ZkSessionOptions, ZkSessionSettings, DigestAuth, PrimaryAuth, RetryPolicy } from './zk/options.js';
export type { Stat } from './zk/stat.js';
export type { NodeEvent, ChildrenEvent, NodeSnapshot, ChildrenSnapshot, Subscription } from './zk/watch.js';
export type { EphemeralHandle } from './zk/ephemeral.js';
export type { Transaction } from './zk/transaction.js';
export { Supervisor, type SupervisorEvents, type KillReason } from './cluster/supervisor.js';
export type { SupervisorOptions, RestartPolicy } from './cluster/options.js';
export type { SlotInfo, SlotState } from './cluster/slot.js';
export { installForkHook, type ForkHookOptions } from './cluster/fork-hook.js';
export { ORPHAN_EXIT_CODE, GIVEN_UP_EXIT_CODE } from './cluster/protocol.js';
export { worker } from './worker/worker.js';
export { StatusBoard, type StatusBoardOptions, type BellwetherStatus, type Readiness } from './status/board.js';
