import { execa } from 'execa';

const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * Account names for uids, through NSS (`getent passwd`), so LDAP or winbind users resolve too. Each uid is
 * asked once per daemon run: uploaders are few and names rarely change.
 */
export class UserNames {
  private readonly known = new Map<number, Promise<string | null>>();

  constructor(private readonly lookUp: (uid: number) => Promise<string | null> = lookUpUserName) {}

  nameOf(uid: number): Promise<string | null> {
    let name = this.known.get(uid);
    if (name === undefined) {
      name = this.lookUp(uid).catch(() => null);
      this.known.set(uid, name);
    }
    return name;
  }
}

async function lookUpUserName(uid: number): Promise<string | null> {
  const result = await execa('getent', ['passwd', String(uid)], { reject: false, timeout: LOOKUP_TIMEOUT_MS, stdin: 'ignore' });
  if (result.exitCode !== 0) return null;
  const name = String(result.stdout ?? '').split(':')[0];
  return name ? name : null;
}
