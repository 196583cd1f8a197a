// sd_notify(3) without linking libsystemd: one datagram to the socket systemd names in NOTIFY_SOCKET.
// Node cannot open unix datagram sockets, which is the only reason this lives in C++.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shuttle.h"

namespace shuttle {

Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string state = StringArgument(info, 0);

  // Read at call time: tests and the service manager may set it after the addon was loaded.
  const char* variable = getenv("NOTIFY_SOCKET");
  if (variable == nullptr || variable[0] == '\0') return Napi::Boolean::New(env, false);
  const std::string socketName(variable);

  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  socklen_t length;
  if (socketName[0] == '/') {
    if (socketName.size() >= sizeof address.sun_path) throw SystemError(env, ENAMETOOLONG, "sendto", &socketName);
    memcpy(address.sun_path, socketName.data(), socketName.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socketName.size() + 1);
  } else if (socketName[0] == '@') {
    // Abstract namespace (unix(7)): the name starts with a NUL and is exactly as long as the address
    // length says, so the length must not include any trailing bytes.
    if (socketName.size() > sizeof address.sun_path) throw SystemError(env, ENAMETOOLONG, "sendto", &socketName);
    memcpy(address.sun_path, socketName.data(), socketName.size());
    address.sun_path[0] = '\0';
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socketName.size());
  } else {
    throw SystemError(env, EAFNOSUPPORT, "sendto", &socketName);
  }

  ScopedFd sock(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() == -1) throw SystemError(env, errno, "socket", &socketName);

  // This runs on the main thread: bound the wait should the manager's queue be full.
  timeval timeout{};
  timeout.tv_sec = 2;
  if (setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) == -1) {
    throw SystemError(env, errno, "setsockopt", &socketName);
  }

  ssize_t sent;
  do {
    sent = sendto(sock.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address),
                  length);
  } while (sent == -1 && errno == EINTR);
  if (sent == -1) throw SystemError(env, errno, "sendto", &socketName);
  return Napi::Boolean::New(env, true);
}

}  // namespace shuttle
