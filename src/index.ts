export { BellwetherError, ErrorCodes, type ErrorCode } from './errors.js';
export { singleton, type SingletonOptions, type HostSingletonOptions } from './singleton/options.js';
export {
  Singleton,
  type RunContext,
  type SingletonEvents,
  type DemotionReason,
  type Backoff,
} from './singleton/singleton.js';
export { defaultLockDir } from './lock/lock-dir.js';
