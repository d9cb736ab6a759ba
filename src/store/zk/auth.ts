/**
 * ZooKeeper authentication (`--zk-auth-file`, digest `user:password`) and the ACL that goes with
 * it: every znode citadel creates grants everything to that identity and nothing to anyone else.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import zookeeper from 'node-zookeeper-client';
import { UserError } from '../../common/errors';

/** Credentials a session presents, and the identity its ACL names. */
export interface ZkAuth {
  /** `digest` for `--zk-auth-file`. */
  scheme: string;
  /** What the session sends (`user:password`); never logged. */
  credentials: Buffer;
  /** The ACL id granted everything: `user:<base64 sha1(user:password)>` for digest. */
  aclId: string;
  /** For messages: the user and where the credentials came from, no secret. */
  describe: string;
}

/** Digest credentials from `user:password`; the ACL id is ZooKeeper's `user:base64(sha1(user:password))`. */
export function digestAuth(userPassword: string, source: string): ZkAuth {
  const m = /^([^:\s]+):(\S.*)$/.exec(userPassword);
  if (!m) throw new UserError(`${source}: expected one line user:password (ZooKeeper digest credentials)`);
  const user = m[1];
  const digest = createHash('sha1').update(userPassword, 'utf8').digest('base64');
  return { scheme: 'digest', credentials: Buffer.from(userPassword, 'utf8'), aclId: `${user}:${digest}`, describe: `digest user ${user} of ${source}` };
}

/** Reads `--zk-auth-file`: one line `user:password`. */
export function readZkAuthFile(file: string): ZkAuth {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`--zk-auth-file ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return digestAuth(text.replace(/\r?\n$/, ''), `--zk-auth-file ${file}`);
}

/** The ACL of every znode created by a session with `auth`: everything for that identity only; open without auth. */
export function aclFor(auth: ZkAuth | undefined): zookeeper.ACL[] {
  const id = auth ? new zookeeper.Id(auth.scheme, auth.aclId) : new zookeeper.Id('world', 'anyone');
  return [new zookeeper.ACL(zookeeper.Permission.ALL, id)];
}

/** The permission bits of an ACL entry (the client's objects call them `permission`, its typings `perms`). */
export function aclPermissions(a: zookeeper.ACL): number {
  return (a as unknown as { permission?: number }).permission ?? a.perms;
}

/**
 * Why `acl` does not keep a znode to `auth`'s identity, or undefined when it does: anyone
 * (world:anyone) may do something, or the identity lacks a permission. Other named identities
 * an operator added are left alone.
 */
export function aclProblem(acl: zookeeper.ACL[], auth: ZkAuth): string | undefined {
  const open = acl.find((a) => a.id.scheme === 'world' && a.id.id === 'anyone');
  if (open) return `anyone may ${permissions(aclPermissions(open))} it (world:anyone)`;
  const ours = acl.find((a) => a.id.scheme === auth.scheme && a.id.id === auth.aclId);
  if (!ours || (aclPermissions(ours) & zookeeper.Permission.ALL) !== zookeeper.Permission.ALL) return `it does not grant everything to ${auth.describe}`;
  return undefined;
}

function permissions(p: number): string {
  const P = zookeeper.Permission;
  const names = [
    [P.READ, 'read'],
    [P.WRITE, 'write'],
    [P.CREATE, 'create under'],
    [P.DELETE, 'delete under'],
    [P.ADMIN, 'change the ACL of'],
  ] as const;
  return names.filter(([bit]) => p & bit).map(([, n]) => n).join(', ') || 'see';
}
