import type { Stat as RawStat } from 'node-zookeeper-client';
import type { Stat } from './stat.js';

/** node-zookeeper-client's stat (64-bit fields as buffers) as ours; apart from stat.ts, which the public declarations use. */
export function toStat(raw: RawStat): Stat {
  return {
    czxid: raw.czxid.readBigInt64BE(0),
    mzxid: raw.mzxid.readBigInt64BE(0),
    pzxid: raw.pzxid.readBigInt64BE(0),
    ctime: Number(raw.ctime.readBigInt64BE(0)),
    mtime: Number(raw.mtime.readBigInt64BE(0)),
    version: raw.version,
    cversion: raw.cversion,
    aversion: raw.aversion,
    ephemeralOwner: sessionIdHex(raw.ephemeralOwner),
    dataLength: raw.dataLength,
    numChildren: raw.numChildren,
  };
}

export function sessionIdHex(id: Buffer): string {
  return id.readBigUInt64BE(0).toString(16);
}
