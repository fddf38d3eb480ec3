import { Candidate, type CandidateOptions } from '../election/candidate.js';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { type Logger, quieter } from '../log/logger.js';
import type { ZkSession } from '../zk/session.js';
import { isRefusal } from '../zk/zk-errors.js';
import { anySignal } from './abort.js';
import { fleetFence } from './fence.js';
import type { Lease, LeaseSource } from './lease.js';

/**
 * Leadership from a fleet election. One candidate stays in the election
 * across terms: after a step-down on suspension it keeps its ballot and
 * leads again on reconnection if the ballot is still the lowest and ours.
 * Releasing by choice (run failed, close) resigns.
 */
export class ClusterLease implements LeaseSource {
  readonly #zk: ZkSession;
  readonly #name: string;
  readonly #options: CandidateOptions;
  readonly #onError: (error: BellwetherError) => void;
  /** The singleton's logger, when a candidate joins (an adapter may give the singleton one after it was made). */
  readonly #log: () => Logger;
  #candidate: Candidate | undefined;
  /** The last resign: a second caller (a second close()) must not resolve before it. */
  #resigning: Promise<void> | undefined;
  /** ZooKeeper refused the candidate (its ACL, its credentials): acquire() rejects with it, for good. */
  #refusal: BellwetherError | undefined;
  readonly #onRefused = new Set<(error: BellwetherError) => void>();

  constructor(zk: ZkSession, name: string, options: CandidateOptions, onError: (error: BellwetherError) => void, log: () => Logger) {
    this.#zk = zk;
    this.#name = name;
    this.#options = options;
    this.#onError = onError;
    this.#log = log;
  }

  prepare(): void {
    if (this.#zk.state === 'closed') throw new BellwetherError(ErrorCodes.CLOSED, `the ZkSession of singleton ${this.#name} is closed`);
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    if (signal.aborted) throw signal.reason;
    if (this.#refusal) throw this.#refusal;
    const candidate = this.#candidate ?? this.#join();
    const token = await new Promise<number>((resolve, reject) => {
      const onWon = ({ token }: { token: number }): void => {
        signal.removeEventListener('abort', onAbort);
        this.#onRefused.delete(onRefused);
        resolve(token);
      };
      const onRefused = (error: BellwetherError): void => {
        candidate.off('won', onWon);
        signal.removeEventListener('abort', onAbort);
        reject(error);
      };
      const onAbort = (): void => {
        this.#onRefused.delete(onRefused);
        candidate.off('won', onWon);
        // Rejected once the ballot is gone: close() must not resolve while it still stands in the election.
        void this.resign().finally(() => reject(signal.reason));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#onRefused.add(onRefused);
      if (this.#refusal) onRefused(this.#refusal);
      else if (candidate.isLeader) onWon({ token: candidate.token! });
      else candidate.once('won', onWon);
    });
    const lost = new AbortController();
    const onDemoted = ({ reason }: { reason: string }): void =>
      lost.abort(new BellwetherError(ErrorCodes.ZK_CONNECTION_LOSS, `singleton ${this.#name} lost fleet leadership (${reason})`));
    candidate.once('demoted', onDemoted);
    if (!candidate.isLeader) onDemoted({ reason: 'before it could start' });
    return {
      token,
      fence: fleetFence(token),
      lost: lost.signal,
      release: async () => {
        candidate.off('demoted', onDemoted);
        // Lost leadership keeps the ballot (it may lead again); giving it up resigns.
        if (!lost.signal.aborted) await this.resign();
      },
    };
  }

  async close(): Promise<void> {
    await this.resign();
  }

  /** Leaves the election: the next candidate leads at once. Every caller waits for the same resign. */
  async resign(): Promise<void> {
    const candidate = this.#candidate;
    this.#candidate = undefined;
    if (candidate) this.#resigning = candidate.close();
    await this.#resigning;
  }

  #join(): Candidate {
    // A singleton needs won and demoted only: its losers leave leader_ack alone (no watch on it, no herd).
    // The singleton logs elected and demoted itself: the Candidate's own lines of them are debug.
    const candidate = new Candidate(this.#zk, this.#name, { ...this.#options, reportLost: false, logger: quieter(this.#log()) });
    // A refusal (the candidate left the election) ends the wait in acquire(), which reports it: once, not here too.
    const onError = (error: BellwetherError): void => (isRefusal(error.code) ? this.#refused(candidate, error) : this.#onError(error));
    candidate.on('error', onError);
    this.#candidate = candidate;
    void candidate.vote().catch(onError);
    return candidate;
  }

  #refused(candidate: Candidate, error: BellwetherError): void {
    if (this.#candidate === candidate) this.#candidate = undefined;
    this.#refusal = error;
    for (const reject of [...this.#onRefused]) reject(error);
    this.#onRefused.clear();
  }
}

/**
 * `host+cluster`: a worker first wins its host's lock; only the host's
 * holder stands in the fleet election, so ZooKeeper carries one candidate per
 * host, and a graceful exit inside a host hands over without the fleet
 * waiting for a session to expire.
 */
export class HostClusterLease implements LeaseSource {
  readonly #host: LeaseSource;
  readonly #cluster: ClusterLease;

  constructor(host: LeaseSource, cluster: ClusterLease) {
    this.#host = host;
    this.#cluster = cluster;
  }

  prepare(): void {
    this.#host.prepare();
    this.#cluster.prepare();
  }

  async close(): Promise<void> {
    await this.#cluster.resign();
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    const host = await this.#host.acquire(signal);
    let fleet: Lease;
    try {
      // Waiting in the fleet election ends too if the host lock is lost meanwhile (its file deleted).
      fleet = await this.#cluster.acquire(anySignal([signal, host.lost]));
    } catch (err) {
      await host.release();
      throw err;
    }
    return {
      token: fleet.token,
      fence: fleetFence(fleet.token, host.token),
      // Lost with either: the fleet's leadership, or the host lock's file.
      lost: anySignal([fleet.lost, host.lost]),
      release: async () => {
        await fleet.release();
        // The host lock goes to another worker, which votes anew: this ballot must go too.
        await this.#cluster.resign();
        await host.release();
      },
    };
  }
}
