// fsync(2) of several descriptors in one trip to a libuv worker thread.
//
// Writeback of every file is started first (sync_file_range with SYNC_FILE_RANGE_WRITE), then each
// descriptor is fsynced in turn. Starting all the writeback before the first fsync lets the filesystem
// allocate blocks for every file at once, so on a journaling filesystem the first fsync's commit
// usually covers the others too and they return without a commit of their own. Each descriptor's own
// fsync still runs and is still checked: the hint only changes how long it takes.
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "shuttle.h"

namespace shuttle {
namespace {

class SyncDescriptorsJob : public Napi::AsyncWorker {
 public:
  // `descriptors` holds -1 where no duplicate could be made; `failures` says why (an errno), else 0.
  SyncDescriptorsJob(Napi::Env env, std::vector<int> descriptors, std::vector<int> failures)
      : Napi::AsyncWorker(env, "shuttle.syncDescriptors"),
        deferred_(Napi::Promise::Deferred::New(env)),
        descriptors_(std::move(descriptors)),
        failures_(std::move(failures)) {}

  ~SyncDescriptorsJob() override {
    for (int fd : descriptors_) {
      if (fd >= 0) close(fd);
    }
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    // Only a hint: a descriptor that cannot take it (a directory, a pipe) is fsynced all the same.
    for (int fd : descriptors_) {
      if (fd >= 0) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    for (size_t i = 0; i < descriptors_.size(); i++) {
      if (descriptors_[i] < 0) continue;
      int result;
      do {
        result = fsync(descriptors_[i]);
      } while (result == -1 && errno == EINTR);
      if (result == -1) failures_[i] = errno;
    }
  }

  // One entry per descriptor, in order: null when its fsync succeeded, else the error.
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array outcomes = Napi::Array::New(env, failures_.size());
    for (size_t i = 0; i < failures_.size(); i++) {
      if (failures_[i] == 0) {
        outcomes.Set(i, env.Null());
      } else {
        outcomes.Set(i, SystemError(env, failures_[i], descriptors_[i] < 0 ? "fcntl" : "fsync").Value());
      }
    }
    deferred_.Resolve(outcomes);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<int> descriptors_;
  std::vector<int> failures_;
};

}  // namespace

Napi::Value SyncDescriptors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "descriptors must be an array");
  Napi::Array list = info[0].As<Napi::Array>();

  // The worker fsyncs its own duplicates, so a caller closing its descriptor early cannot send the
  // fsync to whatever file reuses that number. A descriptor that cannot be duplicated fails alone.
  std::vector<int> duplicates;
  std::vector<int> failures;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value value = list[i];
    int fd = value.IsNumber() ? value.As<Napi::Number>().Int32Value() : -1;
    int duplicate = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    duplicates.push_back(duplicate);
    failures.push_back(duplicate == -1 ? (fd >= 0 ? errno : EBADF) : 0);
  }

  auto* worker = new SyncDescriptorsJob(env, std::move(duplicates), std::move(failures));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace shuttle
