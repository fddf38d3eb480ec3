import { createHash } from 'node:crypto';
import net from 'node:net';
import { BellwetherError, ErrorCodes } from '../errors.js';
import { invalidOption, invalidSecretOption } from '../validate.js';

/**
 * A named ACL: `'open'` (anyone may do anything), `'creator'` (only the
 * identities the creating session authenticated with), `'creator-read-all'`
 * (those identities may do anything, anyone may read), `'read-only'`
 * (anyone may read, nobody may change it; not an election's `acl`).
 */
export type AclName = 'open' | 'creator' | 'creator-read-all' | 'read-only';

export type AclScheme = 'world' | 'auth' | 'digest' | 'ip';

/** One ZooKeeper ACL entry. */
export interface AclEntry {
  /**
   * `'world'` (id `'anyone'`), `'auth'` (id `''`: every identity the creating
   * session authenticated with), `'digest'` (id `user:<base64 of SHA-1 of
   * "user:password">`, ZooKeeper's hashed form, never the password itself),
   * `'ip'` (an address, or `address/bits`).
   */
  scheme: AclScheme;
  id: string;
  /** Letters, each once, in any order: `r` read, `w` write, `c` create children, `d` delete children, `a` admin (set the ACL). */
  perms: string;
}

/** A named ACL or a list of entries. */
export type Acl = AclName | readonly AclEntry[];

const ANYONE = { scheme: 'world', id: 'anyone' } as const;
const AUTH = { scheme: 'auth', id: '' } as const;

const NAMED: Record<AclName, readonly AclEntry[]> = {
  open: [{ ...ANYONE, perms: 'rwcda' }],
  creator: [{ ...AUTH, perms: 'rwcda' }],
  'creator-read-all': [
    { ...AUTH, perms: 'rwcda' },
    { ...ANYONE, perms: 'r' },
  ],
  'read-only': [{ ...ANYONE, perms: 'r' }],
};

const EXPECTED = `'open', 'creator', 'creator-read-all', 'read-only' or a non-empty array of { scheme: 'world'|'auth'|'digest'|'ip', id, perms: letters of 'rwcda' }`;
/** ZooKeeper's hashed digest id: base64 of a 20-byte SHA-1. */
const DIGEST_ID = /^[^:]+:[A-Za-z0-9+/]{27}=$/;

/**
 * Checks an `acl` option's shape (not yet whether the session can use it:
 * see `checkAclFor`). Values are never shown in the errors: a zkCli-style
 * `'digest:user:password:cdrwa'`, or a password in any field, would be
 * printed in clear.
 */
export function checkAcl(value: unknown, option = 'acl'): Acl {
  if (typeof value === 'string') {
    if (Object.hasOwn(NAMED, value)) return value as AclName;
    throw invalidSecretOption(option, EXPECTED, value);
  }
  if (!Array.isArray(value) || value.length === 0) throw invalidSecretOption(option, EXPECTED, value);
  return value.map((entry: unknown, index) => checkEntry(entry, `${option}[${index}]`));
}

function checkEntry(entry: unknown, option: string): AclEntry {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw invalidSecretOption(option, 'an object { scheme, id, perms }', entry);
  const { scheme, id, perms, ...rest } = entry as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw invalidOption(option, 'an object with only scheme, id and perms', unknown);
  if (typeof perms !== 'string' || !/^[rwcda]{1,5}$/.test(perms) || new Set(perms).size !== perms.length) {
    throw invalidSecretOption(`${option}.perms`, "letters of 'rwcda', each at most once (e.g. 'r' or 'rwcda')", perms);
  }
  if (typeof id !== 'string') throw invalidSecretOption(`${option}.id`, 'a string', id);
  switch (scheme) {
    case 'world':
      if (id !== 'anyone') throw invalidSecretOption(`${option}.id`, "'anyone' with scheme 'world'", id);
      break;
    case 'auth':
      if (id !== '') throw invalidSecretOption(`${option}.id`, "'' with scheme 'auth' (it stands for the creating session's identities)", id);
      break;
    case 'digest':
      if (!DIGEST_ID.test(id)) throw invalidSecretOption(`${option}.id`, "ZooKeeper's hashed form 'user:<base64 of SHA-1 of user:password>' with scheme 'digest'", id);
      break;
    case 'ip': {
      const [address, bits, ...more] = id.split('/');
      const family = net.isIP(address ?? '');
      const max = family === 6 ? 128 : 32;
      if (!family || more.length > 0 || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) {
        throw invalidSecretOption(`${option}.id`, "an IP address or 'address/bits' with scheme 'ip'", id);
      }
      break;
    }
    default:
      throw invalidSecretOption(`${option}.scheme`, "'world', 'auth', 'digest' or 'ip'", scheme);
  }
  return { scheme, id, perms };
}

/** ZooKeeper takes the `auth` scheme only from a session that authenticated (InvalidACL otherwise). */
export function needsAuth(acl: Acl): boolean {
  return entriesOf(acl).some((entry) => entry.scheme === 'auth');
}

/**
 * An `acl` option checked for a session: its shape, and that the session
 * has credentials when the ACL names the creator. `undefined` gives
 * `fallback`.
 */
export function checkAclFor(value: unknown, authenticated: boolean, fallback: Acl, option = 'acl'): Acl {
  const acl = value === undefined ? fallback : checkAcl(value, option);
  if (needsAuth(acl) && !authenticated) {
    throw new BellwetherError(
      ErrorCodes.INVALID_OPTION,
      `${option} ${typeof acl === 'string' ? `'${acl}'` : "with scheme 'auth'"} needs a session with digest auth (the auth option of ZkSession): ZooKeeper refuses it from a session with no identity`,
    );
  }
  return acl;
}

/** What the election's nodes get when no `acl` is given: the session's identity may change them, anyone may read them; without auth, open. */
export function defaultElectionAcl(authenticated: boolean): AclName {
  return authenticated ? 'creator-read-all' : 'open';
}

/**
 * A session's credentials, as ZkSession's `auth` option gives them. In a
 * worker, `{ scheme: 'from-primary' }` stands for the primary's, which this
 * process does not know before its session starts.
 */
export type Credentials = readonly ({ scheme: 'digest'; credentials: string } | { scheme: 'from-primary' })[];

/** ZooKeeper's digest id of credentials `'user:password'`: `user:` + base64 of SHA-1 of `'user:password'`. */
export function digestId(credentials: string): string {
  const user = credentials.slice(0, credentials.indexOf(':'));
  return `${user}:${createHash('sha1').update(credentials).digest('base64')}`;
}

/**
 * What a candidate needs of its election's nodes, for its own identity:
 * read (list the ballots), create (cast one), delete (take its ballot and
 * the ack away: ZooKeeper checks a delete against the parent's ACL).
 */
const ELECTION_PERMS = { r: 'read (list the ballots)', c: 'create (cast a ballot)', d: 'delete (take its ballot and leader_ack away on close(): ZooKeeper checks a delete against the parent, so without it no other candidate leads while the session lives)' } as const;

/**
 * An election's `acl` option (undefined: the default by the session's
 * auth), checked for a session with `credentials`: as `checkAclFor`, and it
 * must grant the session's own identity r, c and d through an `auth` entry,
 * a `world` one, or a `digest` one of the session's credentials (`ip`
 * entries say nothing of who the session is). Otherwise the first leader
 * could never hand over, and a parent it made would close the root (shared
 * by every election under it) to everyone.
 */
export function checkElectionAcl(value: unknown, credentials: Credentials, option = 'acl'): Acl {
  const authenticated = credentials.length > 0;
  const acl = checkAclFor(value, authenticated, defaultElectionAcl(authenticated), option);
  const ours = new Set(credentials.flatMap((c) => (c.scheme === 'digest' ? [digestId(c.credentials)] : [])));
  // Credentials from the primary are not known here: a digest entry is taken for theirs (the
  // primary checks its own host ballot's ACL again with them; a wrong one is refused by ZooKeeper).
  const fromPrimary = credentials.some((c) => c.scheme === 'from-primary');
  const granted = new Set(
    entriesOf(acl)
      .filter(({ scheme, id }) => scheme === 'world' || scheme === 'auth' || (scheme === 'digest' && (fromPrimary || ours.has(id))))
      .flatMap(({ perms }) => [...perms]),
  );
  const missing = (Object.keys(ELECTION_PERMS) as (keyof typeof ELECTION_PERMS)[]).filter((perm) => !granted.has(perm));
  if (missing.length > 0) {
    throw new BellwetherError(
      ErrorCodes.INVALID_OPTION,
      `${option}${typeof acl === 'string' ? ` '${acl}'` : ''} must let the session's own identity read, create and delete in the election (perms r, c and d through an 'auth' entry, a 'world' entry or a 'digest' entry of the session's credentials; 'ip' entries do not count); it does not let it ${missing.map((perm) => ELECTION_PERMS[perm]).join(', nor ')}`,
    );
  }
  return acl;
}

/** The entries of an ACL (a named one's too). */
export function entriesOf(acl: Acl): readonly AclEntry[] {
  return typeof acl === 'string' ? NAMED[acl] : acl;
}
