import zookeeper from 'node-zookeeper-client';
import { type Acl, type AclName, entriesOf } from './acl.js';

/*
 * node-zookeeper-client's form of an ACL: a module of its own so that the
 * public declarations (acl.ts's) name no node-zookeeper-client type (its
 * types are not installed with bellwether).
 */

const { Permission } = zookeeper;
const PERMS: Record<string, number> = { r: Permission.READ, w: Permission.WRITE, c: Permission.CREATE, d: Permission.DELETE, a: Permission.ADMIN };
// The library has these classes; its type declarations only partly.
const { ACL, Id } = zookeeper as unknown as { ACL: new (perms: number, id: unknown) => zookeeper.ACL; Id: new (scheme: string, id: string) => unknown };

const built = new Map<AclName, zookeeper.ACL[]>();

/** node-zookeeper-client's form. */
export function toZkAcl(acl: Acl): zookeeper.ACL[] {
  if (typeof acl === 'string' && built.has(acl)) return built.get(acl)!;
  const zkAcl = entriesOf(acl).map(({ scheme, id, perms }) => new ACL([...perms].reduce((sum, letter) => sum + PERMS[letter]!, 0), new Id(scheme, id)));
  if (typeof acl === 'string') built.set(acl, zkAcl);
  return zkAcl;
}
