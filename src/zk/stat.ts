import type { Stat as RawStat } from 'node-zookeeper-client';

/** A node's metadata with 64-bit fields as bigints (zxids) or hex (the owner session). */
export interface Stat {
  czxid: bigint;
  mzxid: bigint;
  pzxid: bigint;
  ctime: number;
  mtime: number;
  version: number;
  cversion: number;
  aversion: number;
  /** Hex session id of the owner for an ephemeral node, `'0'` otherwise. */
  ephemeralOwner: string;
  dataLength: number;
  numChildren: number;
}

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
