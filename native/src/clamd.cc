// zFILDES exchanges with clamd over its unix socket: clamd receives an open descriptor (SCM_RIGHTS,
// see unix(7)) and reads the file itself, so no bytes are copied through the socket. The exchanges
// block, so they run on a libuv worker thread; the replies, or the errno that stopped them, are handed
// to the main thread, which settles the promise.
//
// clamdScanDescriptor is one exchange on its own connection. clamdScanDescriptors sends several files in
// one clamd session (zIDSESSION ... zEND) on one connection: clamd scans them in parallel and answers
// each with "<n>: <reply>", n counting the session's commands from 1, in whatever order they finish.
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <vector>

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

constexpr char kSessionStart[] = "zIDSESSION";
constexpr char kSessionEnd[] = "zEND";

// Both socket timeouts apply per call; re-arming them with what is left before each call keeps a whole
// exchange within its deadline even when clamd trickles its reply.
Failure ArmDeadline(int sock, int option, Clock::time_point deadline, const char* syscall) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
  if (left <= 0) return {ETIMEDOUT, syscall};
  timeval timeout{};
  timeout.tv_sec = static_cast<time_t>(left / 1000000);
  timeout.tv_usec = static_cast<suseconds_t>(left % 1000000);
  if (setsockopt(sock, SOL_SOCKET, option, &timeout, sizeof timeout) == -1) return {errno, "setsockopt"};
  return {};
}

// A stream connection to clamd's unix socket at `socketPath`, into `sock`.
Failure ConnectToClamd(const std::string& socketPath, Clock::time_point deadline, ScopedFd& sock) {
  sock.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.get() == -1) return {errno, "socket"};
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socketPath.size() >= sizeof address.sun_path) return {ENAMETOOLONG, "connect"};
  memcpy(address.sun_path, socketPath.data(), socketPath.size());
  if (Failure failure = ArmDeadline(sock.get(), SO_SNDTIMEO, deadline, "connect")) return failure;
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == -1) {
    return {AsTimeout(errno), "connect"};
  }
  return {};
}

// Whatever clamd has sent, at least one byte, into `buffer`. Closed before the reply is complete: whatever
// arrived is not a verdict.
Failure ReceiveSome(int sock, Clock::time_point deadline, char* buffer, size_t size, size_t& received) {
  for (;;) {
    if (Failure failure = ArmDeadline(sock, SO_RCVTIMEO, deadline, "recv")) return failure;
    ssize_t count = recv(sock, buffer, size, 0);
    if (count == -1) {
      if (errno == EINTR) continue;
      return {AsTimeout(errno), "recv"};
    }
    if (count == 0) return {EPROTO, "recv"};
    received = static_cast<size_t>(count);
    return {};
  }
}

// `bytes` includes the command's NUL terminator.
Failure SendBytes(int sock, const char* bytes, size_t length, Clock::time_point deadline) {
  while (length > 0) {
    if (Failure failure = ArmDeadline(sock, SO_SNDTIMEO, deadline, "send")) return failure;
    ssize_t sent = send(sock, bytes, length, MSG_NOSIGNAL);
    if (sent == -1) {
      if (errno == EINTR) continue;
      return {AsTimeout(errno), "send"};
    }
    bytes += sent;
    length -= static_cast<size_t>(sent);
  }
  return {};
}

// The descriptor travels as ancillary data, which needs at least one byte of ordinary data.
Failure SendFileDescriptor(int sock, int fd, Clock::time_point deadline) {
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
  memcpy(CMSG_DATA(header), &fd, sizeof fd);
  for (;;) {
    if (Failure failure = ArmDeadline(sock, SO_SNDTIMEO, deadline, "sendmsg")) return failure;
    if (sendmsg(sock, &message, MSG_NOSIGNAL) == 1) return {};
    if (errno != EINTR) return {AsTimeout(errno), "sendmsg"};
  }
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

    ScopedFd sock;
    if (Failure failure = ConnectToClamd(socketPath_, deadline, sock)) return failure;
    if (Failure failure = SendBytes(sock.get(), kFildesCommand, sizeof kFildesCommand, deadline)) return failure;
    if (Failure failure = SendFileDescriptor(sock.get(), descriptor_.get(), deadline)) return failure;
    return ReceiveReply(sock.get(), deadline);
  }

  Failure ReceiveReply(int sock, Clock::time_point deadline) {
    char chunk[512];
    for (;;) {
      size_t received = 0;
      if (Failure failure = ReceiveSome(sock, deadline, chunk, sizeof chunk, received)) return failure;
      const char* end = static_cast<const char*>(memchr(chunk, '\0', received));
      if (end != nullptr) {
        reply_.append(chunk, static_cast<size_t>(end - chunk));
        return {};
      }
      reply_.append(chunk, received);
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

namespace {

class ClamdFildesSession : public PromiseWorker {
 public:
  // `descriptors` are duplicates this job owns; -1 where none could be made, with the errno in `failures`.
  ClamdFildesSession(Napi::Env env, std::string socketPath, std::vector<int> descriptors, std::vector<Failure> failures, uint32_t timeoutMs)
      : PromiseWorker(env, "shuttle.clamdScanDescriptors"),
        socketPath_(std::move(socketPath)),
        descriptors_(std::move(descriptors)),
        failures_(std::move(failures)),
        replies_(descriptors_.size()),
        answered_(descriptors_.size(), false),
        timeoutMs_(timeoutMs) {}

  ~ClamdFildesSession() override {
    for (int fd : descriptors_) {
      if (fd >= 0) close(fd);
    }
  }

 protected:
  void Execute() override {
    Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_);
    // Session command number (from 1) -> index of the file it carried.
    std::vector<size_t> sentIndex;
    Failure failure = Exchange(deadline, sentIndex);
    // Whatever the session did not answer fails with what stopped it.
    for (size_t index : sentIndex) {
      if (!answered_[index]) failures_[index] = failure ? failure : Failure{EPROTO, "recv"};
    }
    for (size_t i = 0; i < descriptors_.size(); i++) {
      if (descriptors_[i] >= 0 && !answered_[i] && !failures_[i]) failures_[i] = failure ? failure : Failure{EPROTO, "send"};
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array outcomes = Napi::Array::New(env, replies_.size());
    for (size_t i = 0; i < replies_.size(); i++) {
      if (answered_[i]) {
        outcomes.Set(i, Napi::String::New(env, replies_[i]));
      } else {
        outcomes.Set(i, SystemError(env, failures_[i].errnum, failures_[i].syscall, &socketPath_).Value());
      }
    }
    deferred_.Resolve(outcomes);
  }

 private:
  Failure Exchange(Clock::time_point deadline, std::vector<size_t>& sentIndex) {
    ScopedFd sock;
    if (Failure failure = ConnectToClamd(socketPath_, deadline, sock)) return failure;
    if (Failure failure = SendBytes(sock.get(), kSessionStart, sizeof kSessionStart, deadline)) return failure;
    for (size_t i = 0; i < descriptors_.size(); i++) {
      if (descriptors_[i] < 0) continue;
      if (Failure failure = SendBytes(sock.get(), kFildesCommand, sizeof kFildesCommand, deadline)) return failure;
      if (Failure failure = SendFileDescriptor(sock.get(), descriptors_[i], deadline)) return failure;
      sentIndex.push_back(i);
    }
    Failure received = ReceiveReplies(sock.get(), deadline, sentIndex);
    // Ending the session politely; clamd closes it on its own when we hang up, so a failure here changes nothing.
    SendBytes(sock.get(), kSessionEnd, sizeof kSessionEnd, deadline);
    return received;
  }

  Failure ReceiveReplies(int sock, Clock::time_point deadline, const std::vector<size_t>& sentIndex) {
    size_t waiting = sentIndex.size();
    std::string pending;
    char chunk[4096];
    while (waiting > 0) {
      size_t received = 0;
      if (Failure failure = ReceiveSome(sock, deadline, chunk, sizeof chunk, received)) return failure;
      pending.append(chunk, received);
      size_t start = 0;
      for (size_t end; (end = pending.find('\0', start)) != std::string::npos; start = end + 1) {
        if (!TakeReply(pending.substr(start, end - start), sentIndex)) return {EPROTO, "recv"};
        waiting--;
      }
      pending.erase(0, start);
      if (pending.size() > kMaxReplyBytes) return {EPROTO, "recv"};
    }
    return {};
  }

  // "<n>: <reply>" for the n-th command of the session; anything else is not a session reply.
  bool TakeReply(const std::string& line, const std::vector<size_t>& sentIndex) {
    size_t colon = line.find(": ");
    if (colon == std::string::npos || colon == 0 || colon > 10) return false;
    char* end = nullptr;
    unsigned long number = strtoul(line.c_str(), &end, 10);
    if (end != line.c_str() + colon || number == 0 || number > sentIndex.size()) return false;
    size_t index = sentIndex[number - 1];
    if (answered_[index]) return false;
    answered_[index] = true;
    replies_[index] = line.substr(colon + 2);
    return true;
  }

  const std::string socketPath_;
  std::vector<int> descriptors_;
  std::vector<Failure> failures_;
  std::vector<std::string> replies_;
  std::vector<bool> answered_;
  const uint32_t timeoutMs_;
};

}  // namespace

Napi::Value ClamdScanDescriptors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string socketPath = PathArgument(info, 0);
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "descriptors must be an array");
  Napi::Array list = info[1].As<Napi::Array>();
  if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "timeoutMs must be a number");
  double timeoutMs = info[2].As<Napi::Number>().DoubleValue();
  if (!(timeoutMs >= 1 && timeoutMs <= INT32_MAX)) {
    throw Napi::RangeError::New(env, "timeoutMs must be between 1 and 2147483647");
  }
  for (uint32_t i = 0; i < list.Length(); i++) {
    if (!list.Get(i).IsNumber()) throw Napi::TypeError::New(env, "each descriptor must be a number");
  }
  std::vector<int> duplicates;
  std::vector<Failure> failures;
  for (uint32_t i = 0; i < list.Length(); i++) {
    int fd = list.Get(i).As<Napi::Number>().Int32Value();
    int duplicate = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    duplicates.push_back(duplicate);
    failures.push_back(duplicate == -1 ? Failure{fd >= 0 ? errno : EBADF, "fcntl"} : Failure{});
  }
  return Start(new ClamdFildesSession(env, std::move(socketPath), std::move(duplicates), std::move(failures), static_cast<uint32_t>(timeoutMs)));
}

}  // namespace shuttle
