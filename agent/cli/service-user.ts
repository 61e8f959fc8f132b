import { statSync } from 'node:fs';
import { accountByUid, groupName, type Account } from '../accounts.js';
import { ModeldError } from '../errors.js';

// Root's CLI works on the state directory as the user who owns it (systemd's modeld user): what
// it creates there stays the daemon's to change and remove. Switched before anything in the
// directory is opened; where the switch is not possible, refused, saying how to run it.

let switched: Account | undefined;

/** The user this process switched to (undefined: it runs as whoever started it). */
export const switchedTo = (): Account | undefined => switched;

/** The state directory's owner when it is not root; undefined when there is no directory yet. */
export function stateDirOwner(stateDir: string): Account | undefined {
  let st;
  try {
    st = statSync(stateDir);
  } catch {
    return undefined;
  }
  if (st.uid === 0) return undefined;
  const known = accountByUid(st.uid);
  return { name: known?.name ?? String(st.uid), uid: st.uid, gid: known?.gid ?? st.gid };
}

/** As root: become the owner of `stateDir` (groups, gid, then uid). `command` names the refused command. */
export function becomeStateDirOwner(stateDir: string, command: string): Account | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const owner = stateDirOwner(stateDir);
  if (!owner) return undefined;
  try {
    if (!process.setuid || !process.setgid || !process.initgroups || !process.setgroups) throw Object.assign(new Error('not supported here'), { code: 'ENOSYS' });
    if (/^\d+$/.test(owner.name)) process.setgroups([owner.gid]);
    else process.initgroups(owner.name, owner.gid);
    process.setgid(owner.gid);
    process.setuid(owner.uid);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ModeldError(
      'PermissionDenied',
      `${stateDir} belongs to ${owner.name} (uid ${owner.uid}, group ${groupName(owner.gid)}), the daemon's user, and root could not switch to that user (${code}); ` +
        `files root wrote there would be the daemon's no more: run it as that user: sudo -u ${owner.name} modeld ${command}`,
    );
  }
  switched = owner;
  return owner;
}
