import { BellwetherError, ErrorCodes } from '../errors.js';
import { settledWithin } from '../singleton/abort.js';
import { joinPath } from '../zk/paths.js';
import { ZkSession } from '../zk/session.js';
import type { Stat } from '../zk/stat.js';
import type { NodeSnapshot } from '../zk/watch.js';
import { BALLOT_PREFIX, electionPaths, sequenceOf } from './ballots.js';

export interface BallotReport {
  /** Its node name, `ballot-<marker>-<sequence>`. */
  ballot: string;
  sequence: number;
  /** The session that owns it, as ZooKeeper prints session ids (`0x…`). */
  session: string;
  /** Its czxid: the fencing token (`token`) of a candidate that leads with it. */
  token: number;
  /** Its data (the candidate's, decoded as UTF-8). */
  data: string;
  /** The acknowledged leader's ballot. */
  leader: boolean;
}

export interface LeaderReport {
  ballot: string;
  session: string;
  token: number;
  /** The leader_ack's data, decoded as UTF-8. */
  data: string;
  /** When the leader_ack was created, by the ZooKeeper server's clock. */
  since: string;
  /** From `since` to now by the local clock; 0 when the local clock is behind the server's. */
  leadingMs: number;
}

/** An election as an operator wants to see it: who leads, since when, and who is in line. */
export interface ElectionReport {
  name: string;
  /** The election's directory (under the connect string's chroot). */
  path: string;
  /** The acknowledged leader, or null: then `reason` says why none is. */
  leader: LeaderReport | null;
  reason?: string;
  /** Lowest first: the lowest leads. */
  ballots: BallotReport[];
}

/**
 * Reads an election without taking part. A leader is reported only when the
 * reads agree: the lowest ballot stands from before the leader_ack was read
 * until after, and the ack belongs to that ballot's session and was created
 * after it. Anything else (no ack yet, an ack left by an earlier leader, a
 * handover between two reads) is no acknowledged leader, with the reason.
 */
export async function inspectElection(zk: ZkSession, name: string, root: string): Promise<ElectionReport> {
  const { dir, ack } = electionPaths(root, name);
  const none = (reason: string, ballots: BallotReport[] = []): ElectionReport => ({ name, path: dir, leader: null, reason, ballots });
  const children = await orNone(zk.children(dir));
  if (children === null) return none(`no election at ${dir} (nobody ever voted there: check the name, --root and the connect string's chroot)`);
  const names = children.filter((child) => child.startsWith(BALLOT_PREFIX) && sequenceOf(child) >= 0).sort((a, b) => sequenceOf(a) - sequenceOf(b));
  // Sent in this order on one connection, so answered in this order: every ballot lower than the
  // first one found was gone before that one was read (and never comes back), and the ack is read last.
  const reads = await Promise.all([...names.map((ballot) => orNone(zk.get(joinPath(dir, ballot)))), orNone(zk.get(ack))]);
  const ackNode = reads.pop() ?? null;
  const standing = names.flatMap((ballot, i) => (reads[i] ? [{ ballot, node: reads[i]! }] : []));
  const ballots = standing.map(({ ballot, node }) => ballotReport(ballot, node));
  const [lowest] = ballots;
  const ackOwner = ackNode && hexSession(ackNode.stat);
  if (ackNode && ackNode.stat.ephemeralOwner === '0') return none('the leader_ack is not ephemeral: no session owns it, no leader made it', ballots);
  if (!lowest) return none(ackNode ? `no ballots, but a leader_ack of session ${ackOwner} (its session not yet closed or expired)` : 'no ballots: no candidate stands', ballots);
  // Persistent nodes (ephemeralOwner 0, made by hand or by another tool) belong to no candidate: no leader however they match.
  if (standing[0]!.node.stat.ephemeralOwner === '0') return none(`the lowest ballot (${lowest.ballot}) is not ephemeral: no session owns it, no candidate made it`, ballots);
  if (!ackNode) return none(`the lowest ballot (session ${lowest.session}) has not acknowledged: its candidate is taking over, or lost its connection`, ballots);
  if (ackOwner !== lowest.session) {
    return none(`the leader_ack belongs to session ${ackOwner}, the lowest ballot to session ${lowest.session}: an ack left by an earlier leader, or a handover under way`, ballots);
  }
  const czxid = standing[0]!.node.stat.czxid;
  if (ackNode.stat.czxid < czxid) return none(`the leader_ack of session ${ackOwner} is older than the lowest ballot: left from an earlier ballot of that session`, ballots);
  // Still standing after the ack was read (the same node: a ballot's name is never reused, but its czxid tells).
  const after = await zk.exists(joinPath(dir, lowest.ballot));
  if (after?.czxid !== czxid) return none(`the lowest ballot (session ${lowest.session}) went while it was read: a handover under way`, ballots.slice(1));
  lowest.leader = true;
  const leader = {
    ballot: lowest.ballot,
    session: lowest.session,
    token: lowest.token,
    data: ackNode.data.toString('utf8'),
    since: new Date(ackNode.stat.ctime).toISOString(),
    leadingMs: Math.max(0, Date.now() - ackNode.stat.ctime),
  };
  return { name, path: dir, leader, ballots };
}

/**
 * `inspectElection` in a session of its own, opened for it and closed
 * whatever happens: BW_ERR_ZK_CONNECT_TIMEOUT when no session comes within
 * `timeoutMs`, BW_ERR_ZK_CONNECTION_LOSS when the answers do not come within
 * what is left of it. The name and root are the caller's to check.
 */
export async function queryElection(connect: string, name: string, root: string, timeoutMs: number): Promise<ElectionReport> {
  const deadline = performance.now() + timeoutMs;
  // A short session (the server grants at least its minimum, 4 s by default): closing it waits
  // for a silent server's answer no longer than the session's timeout asked for.
  const zk = new ZkSession({ connect, sessionTimeout: 1000, connectTimeout: timeoutMs });
  // A read-only session with no callbacks of ours: nothing it could report is ours to act on.
  zk.on('error', () => {});
  try {
    await zk.start();
    const report = inspectElection(zk, name, root);
    if (!(await settledWithin(Math.max(1, deadline - performance.now()), report))) {
      throw new BellwetherError(ErrorCodes.ZK_CONNECTION_LOSS, `ZooKeeper at ${connect} did not answer within ${timeoutMs} ms`);
    }
    return await report;
  } finally {
    await zk.close();
  }
}

function ballotReport(ballot: string, node: NodeSnapshot): BallotReport {
  return { ballot, sequence: sequenceOf(ballot), session: hexSession(node.stat), token: Number(node.stat.czxid), data: node.data.toString('utf8'), leader: false };
}

/** As ZooKeeper prints session ids. */
function hexSession(stat: Stat): string {
  return `0x${stat.ephemeralOwner}`;
}

/** A read, or null when the node is not there. */
async function orNone<T>(read: Promise<T>): Promise<T | null> {
  try {
    return await read;
  } catch (err) {
    if ((err as BellwetherError).code === ErrorCodes.ZK_NO_NODE) return null;
    throw err;
  }
}
