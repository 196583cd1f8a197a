// File leases and advisory locks on descriptors the caller opened. Both calls return at once, so they
// run on the main thread.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>

#include "shuttle.h"

namespace shuttle {

Napi::Value SetLease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = DescriptorArgument(info, 0);
  std::string type = StringArgument(info, 1);

  int lease;
  if (type == "read") {
    lease = F_RDLCK;
  } else if (type == "none") {
    lease = F_UNLCK;
  } else {
    throw Napi::TypeError::New(env, "lease type must be 'read' or 'none'");
  }

  if (lease == F_RDLCK) {
    // When another process opens the file for writing, the kernel signals the lease holder (fcntl(2),
    // "Leases"). The default, SIGIO, terminates a Node process. SIGURG is ignored by default and unused
    // by Node, so the break is only recorded: F_GETLEASE then reports F_UNLCK and the caller backs off.
    if (fcntl(fd, F_SETSIG, SIGURG) == -1) throw SystemError(env, errno, "fcntl");
  }
  if (fcntl(fd, F_SETLEASE, lease) == -1) throw SystemError(env, errno, "fcntl");
  return env.Undefined();
}

Napi::Value GetLease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = DescriptorArgument(info, 0);

  int lease = fcntl(fd, F_GETLEASE);
  switch (lease) {
    case -1:
      throw SystemError(env, errno, "fcntl");
    case F_RDLCK:
      return Napi::String::New(env, "read");
    case F_WRLCK:
      return Napi::String::New(env, "write");
    default:
      return Napi::String::New(env, "none");
  }
}

Napi::Value LockExclusive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = DescriptorArgument(info, 0);

  // flock(2) locks belong to the open file description, so they also exclude other processes that
  // opened the same file independently; LOCK_NB turns a conflict into EWOULDBLOCK instead of a wait.
  int result;
  do {
    result = flock(fd, LOCK_EX | LOCK_NB);
  } while (result == -1 && errno == EINTR);
  if (result == -1) throw SystemError(env, errno, "flock");
  return env.Undefined();
}

}  // namespace shuttle
