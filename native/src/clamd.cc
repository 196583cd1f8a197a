// One zFILDES exchange with clamd over its unix socket: clamd receives an open descriptor (SCM_RIGHTS,
// see unix(7)) and reads the file itself, so no bytes are copied through the socket. The exchange
// blocks, so it runs on a libuv worker thread; the reply, or the errno that stopped it, is handed to
// the main thread, which settles the promise.
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>

#include "shuttle.h"

namespace shuttle {
namespace {

using Clock = std::chrono::steady_clock;

// clamd reads commands prefixed with 'z' up to a NUL, so the terminator is part of the command.
constexpr char kFildesCommand[] = "zFILDES";
static_assert(sizeof kFildesCommand == 8, "zFILDES is sent with its NUL terminator");

// clamd's replies are one short line; anything longer is not clamd.
constexpr size_t kMaxReplyBytes = 64 * 1024;

// SO_SNDTIMEO/SO_RCVTIMEO make a blocked call fail with EAGAIN (connect on a unix socket too);
// callers should see that for what it is.
int AsTimeout(int errnum) {
  return (errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINPROGRESS) ? ETIMEDOUT : errnum;
}

class ClamdFildesScan : public Napi::AsyncWorker {
 public:
  ClamdFildesScan(Napi::Env env, std::string socketPath, int descriptor, uint32_t timeoutMs)
      : Napi::AsyncWorker(env, "shuttle.clamdScanDescriptor"),
        descriptor_(descriptor),
        deferred_(Napi::Promise::Deferred::New(env)),
        socketPath_(std::move(socketPath)),
        timeoutMs_(timeoutMs) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { failure_ = Exchange(); }

  void OnOK() override {
    Napi::Env env = Env();
    if (failure_) {
      deferred_.Reject(SystemError(env, failure_.errnum, failure_.syscall, &socketPath_).Value());
    } else {
      deferred_.Resolve(Napi::String::New(env, reply_));
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Failure Exchange() {
    Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_);

    ScopedFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (sock.get() == -1) return {errno, "socket"};

    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (socketPath_.size() >= sizeof address.sun_path) return {ENAMETOOLONG, "connect"};
    memcpy(address.sun_path, socketPath_.data(), socketPath_.size());

    if (Failure failure = ArmTimeout(sock.get(), SO_SNDTIMEO, deadline, "connect")) return failure;
    if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == -1) {
      return {AsTimeout(errno), "connect"};
    }
    if (Failure failure = SendCommand(sock.get(), deadline)) return failure;
    if (Failure failure = SendDescriptor(sock.get(), deadline)) return failure;
    return ReceiveReply(sock.get(), deadline);
  }

  // Both socket timeouts apply per call; re-arming them with what is left keeps the whole exchange
  // within timeoutMs even when clamd trickles its reply.
  static Failure ArmTimeout(int sock, int option, Clock::time_point deadline, const char* syscall) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
    if (left <= 0) return {ETIMEDOUT, syscall};
    timeval timeout{};
    timeout.tv_sec = static_cast<time_t>(left / 1000000);
    timeout.tv_usec = static_cast<suseconds_t>(left % 1000000);
    if (setsockopt(sock, SOL_SOCKET, option, &timeout, sizeof timeout) == -1) return {errno, "setsockopt"};
    return {};
  }

  static Failure SendCommand(int sock, Clock::time_point deadline) {
    const char* next = kFildesCommand;
    size_t left = sizeof kFildesCommand;
    while (left > 0) {
      if (Failure failure = ArmTimeout(sock, SO_SNDTIMEO, deadline, "send")) return failure;
      ssize_t sent = send(sock, next, left, MSG_NOSIGNAL);
      if (sent == -1) {
        if (errno == EINTR) continue;
        return {AsTimeout(errno), "send"};
      }
      next += sent;
      left -= static_cast<size_t>(sent);
    }
    return {};
  }

  // The descriptor travels as ancillary data, which needs at least one byte of ordinary data.
  Failure SendDescriptor(int sock, Clock::time_point deadline) const {
    char byte = 0;
    iovec data{&byte, 1};
    union {
      cmsghdr align;
      char buffer[CMSG_SPACE(sizeof(int))];
    } control{};

    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof control.buffer;

    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    int fd = descriptor_.get();
    memcpy(CMSG_DATA(header), &fd, sizeof fd);

    for (;;) {
      if (Failure failure = ArmTimeout(sock, SO_SNDTIMEO, deadline, "sendmsg")) return failure;
      if (sendmsg(sock, &message, MSG_NOSIGNAL) == 1) return {};
      if (errno != EINTR) return {AsTimeout(errno), "sendmsg"};
    }
  }

  Failure ReceiveReply(int sock, Clock::time_point deadline) {
    char chunk[512];
    for (;;) {
      if (Failure failure = ArmTimeout(sock, SO_RCVTIMEO, deadline, "recv")) return failure;
      ssize_t received = recv(sock, chunk, sizeof chunk, 0);
      if (received == -1) {
        if (errno == EINTR) continue;
        return {AsTimeout(errno), "recv"};
      }
      // Closed before the terminating NUL: whatever arrived is not a verdict.
      if (received == 0) return {EPROTO, "recv"};

      const char* end = static_cast<const char*>(memchr(chunk, '\0', static_cast<size_t>(received)));
      if (end != nullptr) {
        reply_.append(chunk, static_cast<size_t>(end - chunk));
        return {};
      }
      reply_.append(chunk, static_cast<size_t>(received));
      if (reply_.size() > kMaxReplyBytes) return {EPROTO, "recv"};
    }
  }

  // Our own duplicate, so the caller closing its descriptor early cannot make us send whatever file
  // later reuses that number. Closed when the worker is deleted, after the promise settles. Declared
  // first so that it is closed even if a later member fails to construct.
  const ScopedFd descriptor_;
  Napi::Promise::Deferred deferred_;
  const std::string socketPath_;
  const uint32_t timeoutMs_;
  Failure failure_;
  std::string reply_;
};

}  // namespace

Napi::Value ClamdScanDescriptor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string socketPath = PathArgument(info, 0);
  int fd = DescriptorArgument(info, 1);
  if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "timeoutMs must be a number");
  double timeoutMs = info[2].As<Napi::Number>().DoubleValue();
  if (!(timeoutMs >= 1 && timeoutMs <= INT32_MAX)) {
    throw Napi::RangeError::New(env, "timeoutMs must be between 1 and 2147483647");
  }

  int duplicate = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (duplicate == -1) {
    int errnum = errno;
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(SystemError(env, errnum, "fcntl").Value());
    return deferred.Promise();
  }

  auto* worker = new ClamdFildesScan(env, std::move(socketPath), duplicate, static_cast<uint32_t>(timeoutMs));
  Napi::Promise promise = worker->Promise();
  // libuv runs Execute on its pool; the worker deletes itself after OnOK/OnError.
  worker->Queue();
  return promise;
}

}  // namespace shuttle
