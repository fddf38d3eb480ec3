import { joinPath } from '../zk/paths.js';

/** The seed's layout, kept so that other clients of the same recipe can share an election. */
export const DEFAULT_ELECTION_ROOT = '/_zkelection';
export const BALLOT_PREFIX = 'ballot';
export const LEADER_ACK = 'leader_ack';

export interface ElectionPaths {
  dir: string;
  ack: string;
}

export function electionPaths(root: string, name: string): ElectionPaths {
  const dir = joinPath(root, name);
  return { dir, ack: joinPath(dir, LEADER_ACK) };
}

/** `ballot-<marker>-`: ZooKeeper appends the sequence; the marker finds a create whose answer was lost. */
export function ballotPrefix(marker: string): string {
  return `${BALLOT_PREFIX}-${marker}-`;
}

/** The ballots among a directory's children, lowest sequence (the leader) first. */
export function sortedBallots(children: readonly string[]): string[] {
  return children
    .filter((child) => child.startsWith(BALLOT_PREFIX) && /\d+$/.test(child))
    .sort((a, b) => sequenceOf(a) - sequenceOf(b));
}

export function sequenceOf(ballot: string): number {
  return Number(/(\d+)$/.exec(ballot)![1]);
}
