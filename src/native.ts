// Loader for the native addon (native/). Declares its TypeScript interface; the C++ only does syscalls.
// INTERFACE CONTRACT (implementation pending in this file):

export type LeaseType = 'read' | 'write' | 'none';

export interface AclEntry {
  tag: 'user_obj' | 'user' | 'group_obj' | 'group' | 'mask' | 'other';
  /** Numeric uid/gid for 'user'/'group' entries, undefined otherwise. */
  id?: number;
  /** Name resolved from id when the account exists. */
  qualifier?: string;
  read: boolean;
  write: boolean;
  execute: boolean;
}

export type AclKind = 'access' | 'default';

export interface NativeAddon {
  /** fcntl(fd, F_SETLEASE, F_RDLCK | F_UNLCK). Throws fs-style errors (EAGAIN while a writer holds the file open, EACCES without ownership or CAP_LEASE). */
  setLease(fd: number, type: 'read' | 'none'): void;
  /** fcntl(fd, F_GETLEASE). */
  getLease(fd: number): LeaseType;
  /** flock(fd, LOCK_EX | LOCK_NB). Throws EWOULDBLOCK/EAGAIN error when another process holds it. */
  lockExclusive(fd: number): void;
  /**
   * One zFILDES exchange with clamd over a unix socket: connect, send "zFILDES\0" and the descriptor (SCM_RIGHTS),
   * read the reply up to its NUL. Runs off the main thread. Rejects with fs-style errors (ECONNREFUSED, ENOENT, ETIMEDOUT).
   */
  clamdScanDescriptor(socketPath: string, fd: number, timeoutMs: number): Promise<string>;
  /** sd_notify(3): returns false without NOTIFY_SOCKET. Handles abstract (@) sockets. */
  sdNotify(state: string): boolean;
  getAcl(path: string, kind: AclKind): Promise<AclEntry[]>;
  getAclSync(path: string, kind: AclKind): AclEntry[];
  setAcl(path: string, kind: AclKind, entries: AclEntry[]): Promise<void>;
  setAclSync(path: string, kind: AclKind, entries: AclEntry[]): void;
  deleteDefaultAcl(path: string): Promise<void>;
  deleteDefaultAclSync(path: string): void;
  hasExtendedAcl(path: string): Promise<boolean>;
  hasExtendedAclSync(path: string): boolean;
}
