// Declarations shared by the addon's translation units. Each exported function does one system call
// (or one short, fixed sequence of them); validation and policy live in src/native.ts.
#pragma once

#include <napi.h>

#include <unistd.h>

#include <string>

namespace shuttle {

// Owns a descriptor and closes it when the scope ends, whichever way it ends.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// A failed system call, recorded where it happened (possibly a worker thread) so that the JavaScript
// error can be built later on the main thread. errnum == 0 means success.
struct Failure {
  int errnum = 0;
  const char* syscall = nullptr;

  explicit operator bool() const { return errnum != 0; }
};

// An AsyncWorker that settles a promise: Execute runs on a libuv worker thread, OnOK (the subclass's)
// resolves deferred_ on the main thread, and an error thrown there rejects it.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  PromiseWorker(Napi::Env env, const char* resourceName)
      : Napi::AsyncWorker(env, resourceName), deferred_(Napi::Promise::Deferred::New(env)) {}
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

  Napi::Promise::Deferred deferred_;
};

// Queues `worker` on the libuv pool and returns its promise; the worker deletes itself once settled.
inline Napi::Promise Start(PromiseWorker* worker) {
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Builds an error shaped like Node's fs errors:
//   "ENOENT: no such file or directory, acl_get_file '/srv/x'"
// with code, errno (negative, as Node reports it), syscall and, when given, path.
Napi::Error SystemError(Napi::Env env, int errnum, const char* syscall, const std::string* path = nullptr);

// Argument readers for the raw export table. The TypeScript wrapper has already checked everything;
// these only keep a direct caller from handing C++ something it cannot represent.
int DescriptorArgument(const Napi::CallbackInfo& info, size_t index);
std::string StringArgument(const Napi::CallbackInfo& info, size_t index);
std::string PathArgument(const Napi::CallbackInfo& info, size_t index);

// lease.cc
Napi::Value SetLease(const Napi::CallbackInfo& info);
Napi::Value GetLease(const Napi::CallbackInfo& info);
Napi::Value LockExclusive(const Napi::CallbackInfo& info);

// clamd.cc
Napi::Value ClamdScanDescriptor(const Napi::CallbackInfo& info);
Napi::Value ClamdScanDescriptors(const Napi::CallbackInfo& info);

// notify.cc
Napi::Value SdNotify(const Napi::CallbackInfo& info);

// batch.cc
Napi::Value SyncDescriptors(const Napi::CallbackInfo& info);
Napi::Value CreateFiles(const Napi::CallbackInfo& info);
Napi::Value CloseDescriptors(const Napi::CallbackInfo& info);
Napi::Value ChangeNames(const Napi::CallbackInfo& info);

// addon.cc
Napi::Object Init(Napi::Env env, Napi::Object exports);

// acl.cc
Napi::Value GetAcl(const Napi::CallbackInfo& info);
Napi::Value GetAclSync(const Napi::CallbackInfo& info);
Napi::Value SetAcl(const Napi::CallbackInfo& info);
Napi::Value SetAclSync(const Napi::CallbackInfo& info);
Napi::Value DeleteDefaultAcl(const Napi::CallbackInfo& info);
Napi::Value DeleteDefaultAclSync(const Napi::CallbackInfo& info);
Napi::Value HasExtendedAcl(const Napi::CallbackInfo& info);
Napi::Value HasExtendedAclSync(const Napi::CallbackInfo& info);

}  // namespace shuttle
