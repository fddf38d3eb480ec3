import { BellwetherError, ErrorCodes } from '../errors.js';
import { checkPath } from './paths.js';

export interface ParsedConnectString {
  servers: { host: string; port: number }[];
  chroot: string | undefined;
}

/**
 * `host:port[,host:port...][/chroot]`, checked before any network I/O. IPv6
 * hosts are written in brackets: `[::1]:2181`.
 */
export function parseConnectString(connect: unknown): ParsedConnectString {
  const fail = (why: string): never => {
    throw new BellwetherError(
      ErrorCodes.INVALID_CONNECT_STRING,
      `connect string ${JSON.stringify(connect)} ${why}; expected "host:port[,host:port...][/chroot]"`,
    );
  };
  if (typeof connect !== 'string' || connect.trim() === '') return fail('must be a non-empty string');
  const slash = connect.indexOf('/');
  const hostList = slash >= 0 ? connect.slice(0, slash) : connect;
  let chroot: string | undefined;
  if (slash >= 0) {
    const raw = connect.slice(slash);
    try {
      chroot = checkPath(raw, 'chroot');
    } catch (err) {
      return fail(`has a bad chroot: ${(err as Error).message}`);
    }
    if (chroot === '/') chroot = undefined;
  }
  const servers = hostList.split(',').map((entry) => {
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry.trim());
    if (!match) return fail(`has a bad server ${JSON.stringify(entry)}`);
    const port = Number(match[2]);
    if (port < 1 || port > 65535) return fail(`has a port out of range in ${JSON.stringify(entry)}`);
    return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
  });
  return { servers, chroot };
}
