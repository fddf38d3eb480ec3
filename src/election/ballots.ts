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

/** Where a ballot stands among a directory's children: how many ballots are lower, and the highest of them. */
export interface Standing {
  /** -1 when the ballot is not among the children. */
  lower: number;
  /** The ballot just below (the one to watch), when there is one. */
  predecessor: string | undefined;
  /** The ballot just below the predecessor, when there is one. */
  grandPredecessor: string | undefined;
}

/**
 * One pass, each sequence read once: a fleet's simultaneous start lists
 * up to N ballots N times, and sorting them (a sequence parsed per
 * comparison) was most of the client's work there.
 */
export function standingOf(children: readonly string[], ballot: string): Standing {
  const own = sequenceOf(ballot);
  let found = false;
  let lower = 0;
  let predecessor: string | undefined;
  let predecessorSequence = -1;
  let grandPredecessor: string | undefined;
  let grandSequence = -1;
  for (const child of children) {
    if (child === ballot) {
      found = true;
      continue;
    }
    if (!child.startsWith(BALLOT_PREFIX)) continue;
    const sequence = sequenceOf(child);
    if (sequence < 0 || sequence >= own) continue;
    lower += 1;
    if (sequence > predecessorSequence) {
      grandSequence = predecessorSequence;
      grandPredecessor = predecessor;
      predecessorSequence = sequence;
      predecessor = child;
    } else if (sequence > grandSequence) {
      grandSequence = sequence;
      grandPredecessor = child;
    }
  }
  return found ? { lower, predecessor, grandPredecessor } : { lower: -1, predecessor: undefined, grandPredecessor: undefined };
}

/** The sequence number ZooKeeper appended (its trailing digits), or -1 when there is none. */
export function sequenceOf(ballot: string): number {
  let start = ballot.length;
  while (start > 0) {
    const code = ballot.charCodeAt(start - 1);
    if (code < 48 || code > 57) break;
    start -= 1;
  }
  return start === ballot.length ? -1 : Number(ballot.slice(start));
}
