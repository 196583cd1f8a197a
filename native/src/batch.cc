// File jobs that run for many files in one trip to a libuv worker thread, so that a burst of small files
// costs one thread wake-up per batch rather than one per file: fsync, exclusive create, and close.
//
// For fsync, writeback of every file is started first (sync_file_range with SYNC_FILE_RANGE_WRITE), then each
// descriptor is fsynced in turn. Starting all the writeback before the first fsync lets the filesystem
// allocate blocks for every file at once, so on a journaling filesystem the first fsync's commit
// usually covers the others too and they return without a commit of their own. Each descriptor's own
// fsync still runs and is still checked: the hint only changes how long it takes.
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "shuttle.h"

namespace shuttle {
namespace {

// fsync or close of each descriptor. For fsync the job owns duplicates (-1 where none could be made, with
// the errno in `failures`) and closes them when it is deleted; for close the descriptors are the callers',
// given up to the job.
class DescriptorsJob : public PromiseWorker {
 public:
  enum class Operation { kFsync, kClose };

  DescriptorsJob(Napi::Env env, Operation operation, std::vector<int> descriptors, std::vector<int> failures)
      : PromiseWorker(env, operation == Operation::kFsync ? "shuttle.syncDescriptors" : "shuttle.closeDescriptors"),
        operation_(operation),
        descriptors_(std::move(descriptors)),
        failures_(std::move(failures)) {}

  ~DescriptorsJob() override {
    if (operation_ != Operation::kFsync) return;
    for (int fd : descriptors_) {
      if (fd >= 0) close(fd);
    }
  }

 protected:
  void Execute() override {
    if (operation_ == Operation::kClose) {
      // No retry on EINTR: on Linux the descriptor is released whatever close(2) returns.
      for (size_t i = 0; i < descriptors_.size(); i++) {
        if (close(descriptors_[i]) == -1 && errno != EINTR) failures_[i] = errno;
      }
      return;
    }
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

  // One entry per descriptor, in order: null when its call succeeded, else the error.
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array outcomes = Napi::Array::New(env, failures_.size());
    for (size_t i = 0; i < failures_.size(); i++) {
      if (failures_[i] == 0) {
        outcomes.Set(i, env.Null());
      } else {
        const char* syscall = operation_ == Operation::kClose ? "close" : descriptors_[i] < 0 ? "fcntl" : "fsync";
        outcomes.Set(i, SystemError(env, failures_[i], syscall).Value());
      }
    }
    deferred_.Resolve(outcomes);
  }

 private:
  const Operation operation_;
  std::vector<int> descriptors_;
  std::vector<int> failures_;
};

Napi::Value QueueDescriptorsJob(Napi::Env env, DescriptorsJob::Operation operation, std::vector<int> descriptors, std::vector<int> failures) {
  return Start(new DescriptorsJob(env, operation, std::move(descriptors), std::move(failures)));
}

std::vector<int> DescriptorList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "descriptors must be an array");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<int> descriptors;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value value = list[i];
    if (!value.IsNumber()) throw Napi::TypeError::New(env, "each descriptor must be a number");
    descriptors.push_back(value.As<Napi::Number>().Int32Value());
  }
  return descriptors;
}

}  // namespace

Napi::Value SyncDescriptors(const Napi::CallbackInfo& info) {
  // The worker fsyncs its own duplicates, so a caller closing its descriptor early cannot send the
  // fsync to whatever file reuses that number. A descriptor that cannot be duplicated fails alone.
  std::vector<int> duplicates;
  std::vector<int> failures;
  for (int fd : DescriptorList(info)) {
    int duplicate = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    duplicates.push_back(duplicate);
    failures.push_back(duplicate == -1 ? (fd >= 0 ? errno : EBADF) : 0);
  }
  return QueueDescriptorsJob(info.Env(), DescriptorsJob::Operation::kFsync, std::move(duplicates), std::move(failures));
}

Napi::Value CloseDescriptors(const Napi::CallbackInfo& info) {
  std::vector<int> descriptors = DescriptorList(info);
  std::vector<int> failures(descriptors.size(), 0);
  return QueueDescriptorsJob(info.Env(), DescriptorsJob::Operation::kClose, std::move(descriptors), std::move(failures));
}

namespace {

// Duplicates of the directories a batch works in, one per directory descriptor however many files of the
// batch are in it. The job owns them: callers may close theirs before it runs, and the numbers may be reused.
class DirectoryDuplicates {
 public:
  DirectoryDuplicates() = default;
  DirectoryDuplicates(const DirectoryDuplicates&) = delete;
  DirectoryDuplicates& operator=(const DirectoryDuplicates&) = delete;
  DirectoryDuplicates(DirectoryDuplicates&& other) noexcept : byDescriptor_(std::move(other.byDescriptor_)) { other.byDescriptor_.clear(); }
  ~DirectoryDuplicates() {
    for (const auto& entry : byDescriptor_) {
      if (entry.second.first >= 0) close(entry.second.first);
    }
  }

  // The duplicate of `fd`, or -1 with the reason in `errnum` (left alone when it already holds one).
  int Of(int fd, int& errnum) {
    auto found = byDescriptor_.find(fd);
    if (found == byDescriptor_.end()) {
      int duplicate = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
      found = byDescriptor_.emplace(fd, std::make_pair(duplicate, duplicate == -1 ? (fd >= 0 ? errno : EBADF) : 0)).first;
    }
    if (found->second.first == -1 && errnum == 0) errnum = found->second.second;
    return found->second.first;
  }

 private:
  // caller's descriptor -> (duplicate or -1, errno when -1)
  std::map<int, std::pair<int, int>> byDescriptor_;
};

struct Creation {
  int directory = -1;  // a duplicate owned by the job's DirectoryDuplicates, -1 when none could be made
  std::string name;
  mode_t mode = 0;
  int fd = -1;
  int errnum = 0;
};

// Creates run one after another: the kernel serialises creates in a directory anyway, and waiters for a
// directory's lock spin, so several threads creating in one directory would only burn CPU.
class CreateFilesJob : public PromiseWorker {
 public:
  CreateFilesJob(Napi::Env env, std::vector<Creation> creations, DirectoryDuplicates directories)
      : PromiseWorker(env, "shuttle.createFiles"), creations_(std::move(creations)), directories_(std::move(directories)) {}

 protected:
  void Execute() override {
    for (Creation& creation : creations_) {
      if (creation.directory < 0) continue;
      do {
        creation.fd = openat(creation.directory, creation.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, creation.mode);
      } while (creation.fd == -1 && errno == EINTR);
      if (creation.fd == -1) creation.errnum = errno;
    }
  }

  // One entry per file, in order: the new descriptor (the caller owns it), or the error.
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array outcomes = Napi::Array::New(env, creations_.size());
    for (size_t i = 0; i < creations_.size(); i++) {
      const Creation& creation = creations_[i];
      if (creation.errnum == 0) {
        outcomes.Set(i, Napi::Number::New(env, creation.fd));
      } else {
        outcomes.Set(i, SystemError(env, creation.errnum, creation.directory < 0 ? "fcntl" : "open", &creation.name).Value());
      }
    }
    deferred_.Resolve(outcomes);
  }

  void OnError(const Napi::Error& error) override {
    // Never reached with descriptors open (Execute does not throw), but close any all the same.
    for (Creation& creation : creations_) {
      if (creation.fd >= 0) close(creation.fd);
    }
    deferred_.Reject(error.Value());
  }

 private:
  std::vector<Creation> creations_;
  DirectoryDuplicates directories_;
};

}  // namespace

Napi::Value CreateFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "files must be an array");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<Creation> creations(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value value = list[i];
    if (!value.IsObject()) throw Napi::TypeError::New(env, "each file must be an object");
    Napi::Object file = value.As<Napi::Object>();
    Napi::Value directory = file.Get("directory");
    Napi::Value name = file.Get("name");
    Napi::Value mode = file.Get("mode");
    if (!directory.IsNumber() || !name.IsString() || !mode.IsNumber()) {
      throw Napi::TypeError::New(env, "each file needs a numeric directory, a string name and a numeric mode");
    }
    creations[i].name = name.As<Napi::String>().Utf8Value();
    creations[i].mode = static_cast<mode_t>(mode.As<Napi::Number>().Uint32Value() & 07777);
  }
  DirectoryDuplicates directories;
  for (uint32_t i = 0; i < list.Length(); i++) {
    int fd = list.Get(i).As<Napi::Object>().Get("directory").As<Napi::Number>().Int32Value();
    creations[i].directory = directories.Of(fd, creations[i].errnum);
  }
  return Start(new CreateFilesJob(env, std::move(creations), std::move(directories)));
}

namespace {

// One name change: rename(2), link(2) or unlink(2), by names inside open directories, never following a
// symlink (renameat and linkat without flags, unlinkat of a file).
struct NameChange {
  enum class Kind { kRename, kLink, kUnlink } kind = Kind::kUnlink;
  int from = -1;  // duplicates owned by the job's DirectoryDuplicates
  std::string fromName;
  int to = -1;
  std::string toName;
  int errnum = 0;
  const char* syscall = "fcntl";
};

class NameChangesJob : public PromiseWorker {
 public:
  NameChangesJob(Napi::Env env, std::vector<NameChange> changes, DirectoryDuplicates directories)
      : PromiseWorker(env, "shuttle.changeNames"), changes_(std::move(changes)), directories_(std::move(directories)) {}

 protected:
  void Execute() override {
    for (NameChange& change : changes_) {
      if (change.errnum != 0) continue;
      int result = -1;
      switch (change.kind) {
        case NameChange::Kind::kRename:
          change.syscall = "rename";
          result = renameat(change.from, change.fromName.c_str(), change.to, change.toName.c_str());
          break;
        case NameChange::Kind::kLink:
          change.syscall = "link";
          result = linkat(change.from, change.fromName.c_str(), change.to, change.toName.c_str(), 0);
          break;
        case NameChange::Kind::kUnlink:
          change.syscall = "unlink";
          result = unlinkat(change.from, change.fromName.c_str(), 0);
          break;
      }
      if (result == -1) change.errnum = errno;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array outcomes = Napi::Array::New(env, changes_.size());
    for (size_t i = 0; i < changes_.size(); i++) {
      const NameChange& change = changes_[i];
      outcomes.Set(i, change.errnum == 0 ? env.Null() : SystemError(env, change.errnum, change.syscall, &change.fromName).Value());
    }
    deferred_.Resolve(outcomes);
  }

 private:
  std::vector<NameChange> changes_;
  DirectoryDuplicates directories_;
};


}  // namespace

Napi::Value ChangeNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "changes must be an array");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<NameChange> changes(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value value = list[i];
    if (!value.IsObject()) throw Napi::TypeError::New(env, "each change must be an object");
    Napi::Object object = value.As<Napi::Object>();
    std::string kind = object.Get("kind").IsString() ? object.Get("kind").As<Napi::String>().Utf8Value() : "";
    NameChange& change = changes[i];
    if (kind == "rename") {
      change.kind = NameChange::Kind::kRename;
    } else if (kind == "link") {
      change.kind = NameChange::Kind::kLink;
    } else if (kind == "unlink") {
      change.kind = NameChange::Kind::kUnlink;
    } else {
      throw Napi::TypeError::New(env, "kind must be rename, link or unlink");
    }
    if (!object.Get("fromName").IsString()) throw Napi::TypeError::New(env, "fromName must be a string");
    change.fromName = object.Get("fromName").As<Napi::String>().Utf8Value();
    if (change.kind != NameChange::Kind::kUnlink) {
      if (!object.Get("toName").IsString()) throw Napi::TypeError::New(env, "toName must be a string");
      change.toName = object.Get("toName").As<Napi::String>().Utf8Value();
    }
  }
  DirectoryDuplicates directories;
  auto descriptor = [](Napi::Value value) { return value.IsNumber() ? value.As<Napi::Number>().Int32Value() : -1; };
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object object = list.Get(i).As<Napi::Object>();
    NameChange& change = changes[i];
    change.from = directories.Of(descriptor(object.Get("from")), change.errnum);
    if (change.kind != NameChange::Kind::kUnlink) change.to = directories.Of(descriptor(object.Get("to")), change.errnum);
  }
  return Start(new NameChangesJob(env, std::move(changes), std::move(directories)));
}

}  // namespace shuttle
