import { readFileSync } from 'node:fs';

// Users and groups by name or id, from /etc/passwd and /etc/group (Node has no getpwuid/getgrnam).
// Accounts only in NSS (LDAP, sssd) are not seen: callers fall back to bare ids.

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

export interface Group {
  name: string;
  gid: number;
  members: string[];
}

function rows(file: string): string[][] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

export function accountByUid(uid: number, file = '/etc/passwd'): Account | undefined {
  const r = rows(file).find((f) => Number(f[2]) === uid && f[2] !== '');
  return r ? { name: r[0], uid, gid: Number(r[3]) } : undefined;
}

export function groupBy(key: { name: string } | { gid: number }, file = '/etc/group'): Group | undefined {
  const r = rows(file).find((f) => ('name' in key ? f[0] === key.name : f[2] !== '' && Number(f[2]) === key.gid));
  return r ? { name: r[0], gid: Number(r[2]), members: (r[3] ?? '').split(',').filter(Boolean) } : undefined;
}

/** "name" when known, else the bare id. */
export const userName = (uid: number) => accountByUid(uid)?.name ?? String(uid);
export const groupName = (gid: number) => groupBy({ gid })?.name ?? String(gid);
