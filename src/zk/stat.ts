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
