import { type FleetMessage, isFleetMessage } from '../cluster/protocol.js';
import { sendToPrimary } from './send-to-primary.js';
import { worker } from './worker.js';

/**
 * @internal Whether this worker's primary stands in fleet elections for the
 * host: a Supervisor (only it makes a worker supervised) that has `zk` (only
 * then it passes its settings). installForkHook passes settings too, but its
 * workers are not supervised, and keep their own sessions.
 */
export function primaryHoldsFleetBallots(): boolean {
  return worker.isSupervised && worker.zkSettings() !== undefined;
}

/** @internal False when the channel is closed (the primary is gone; orphan fencing ends this worker). */
export function tellPrimary(message: FleetMessage): boolean {
  return sendToPrimary(message);
}

/** @internal The primary's answers about one holding (`election`, `hold`); returns an unsubscribe. */
export function onFleetAnswer(election: string, hold: number, cb: (message: FleetMessage) => void): () => void {
  const listener = (message: unknown): void => {
    if (isFleetMessage(message) && message.election === election && message.hold === hold) cb(message);
  };
  process.on('message', listener);
  return () => void process.off('message', listener);
}
