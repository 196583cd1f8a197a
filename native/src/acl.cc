// POSIX ACLs through libacl (acl_get_file(3), acl_set_file(3), acl_delete_def_file(3),
// acl_extended_file(3)). Every operation has an async form, run on a libuv worker thread, and a sync
// form; both share one Operation type whose Run() does the system calls and records errno, and whose
// Result() builds the JavaScript value on the main thread.
//
// Symlinks are never followed. libacl only offers path-based calls for default ACLs, so each
// operation first opens the path with O_PATH | O_NOFOLLOW, refuses a symlink with ELOOP, and then
// hands libacl "/proc/self/fd/N", which names exactly the inode that was opened. Failures while
// resolving the path are reported under the operation's own name (acl_get_file, ...).
#include <acl/libacl.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/acl.h>
#include <sys/stat.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "shuttle.h"

namespace shuttle {
namespace {

struct EntryData {
  acl_tag_t tag = ACL_UNDEFINED_TAG;
  uint32_t id = 0;  // uid or gid, for ACL_USER and ACL_GROUP only
  bool read = false;
  bool write = false;
  bool execute = false;
};

bool HasQualifier(acl_tag_t tag) { return tag == ACL_USER || tag == ACL_GROUP; }

const char* TagName(acl_tag_t tag) {
  switch (tag) {
    case ACL_USER_OBJ: return "user_obj";
    case ACL_USER: return "user";
    case ACL_GROUP_OBJ: return "group_obj";
    case ACL_GROUP: return "group";
    case ACL_MASK: return "mask";
    case ACL_OTHER: return "other";
    default: return nullptr;
  }
}

// Owns an acl_t (or NULL) and frees it when the scope ends.
class AclHandle {
 public:
  explicit AclHandle(acl_t acl) : acl_(acl) {}
  ~AclHandle() {
    if (acl_ != nullptr) acl_free(acl_);
  }
  AclHandle(const AclHandle&) = delete;
  AclHandle& operator=(const AclHandle&) = delete;

  acl_t get() const { return acl_; }
  // acl_create_entry(3) may reallocate the ACL and updates the caller's handle through this pointer.
  acl_t* address() { return &acl_; }

 private:
  acl_t acl_;
};

class NoFollowPath {
 public:
  Failure Open(const std::string& path, const char* syscall) {
    fd_.reset(open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (fd_.get() == -1) return {errno, syscall};
    // With O_PATH, O_NOFOLLOW opens the link itself rather than failing, so look at what we got.
    struct stat status;
    if (fstat(fd_.get(), &status) == -1) return {errno, syscall};
    if (S_ISLNK(status.st_mode)) return {ELOOP, syscall};
    snprintf(procPath_, sizeof procPath_, "/proc/self/fd/%d", fd_.get());
    return {};
  }

  const char* procPath() const { return procPath_; }

 private:
  ScopedFd fd_;
  char procPath_[32] = {};
};

struct GetAclOperation {
  std::string path;
  acl_type_t type;
  std::vector<EntryData> entries;

  Failure Run() {
    NoFollowPath target;
    if (Failure failure = target.Open(path, "acl_get_file")) return failure;
    AclHandle acl(acl_get_file(target.procPath(), type));
    if (acl.get() == nullptr) return {errno, "acl_get_file"};

    acl_entry_t entry;
    int more = acl_get_entry(acl.get(), ACL_FIRST_ENTRY, &entry);
    for (; more == 1; more = acl_get_entry(acl.get(), ACL_NEXT_ENTRY, &entry)) {
      EntryData data;
      if (acl_get_tag_type(entry, &data.tag) == -1) return {errno, "acl_get_tag_type"};
      if (TagName(data.tag) == nullptr) return {ENOTSUP, "acl_get_tag_type"};
      if (HasQualifier(data.tag)) {
        void* qualifier = acl_get_qualifier(entry);
        if (qualifier == nullptr) return {errno, "acl_get_qualifier"};
        data.id = data.tag == ACL_USER ? *static_cast<uid_t*>(qualifier) : *static_cast<gid_t*>(qualifier);
        acl_free(qualifier);
      }
      acl_permset_t permset;
      if (acl_get_permset(entry, &permset) == -1) return {errno, "acl_get_permset"};
      int read = acl_get_perm(permset, ACL_READ);
      int write = acl_get_perm(permset, ACL_WRITE);
      int execute = acl_get_perm(permset, ACL_EXECUTE);
      if (read == -1 || write == -1 || execute == -1) return {errno, "acl_get_perm"};
      data.read = read == 1;
      data.write = write == 1;
      data.execute = execute == 1;
      entries.push_back(data);
    }
    if (more == -1) return {errno, "acl_get_entry"};
    return {};
  }

  Napi::Value Result(Napi::Env env) const {
    Napi::Array result = Napi::Array::New(env, entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      const EntryData& data = entries[i];
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("tag", Napi::String::New(env, TagName(data.tag)));
      if (HasQualifier(data.tag)) entry.Set("id", Napi::Number::New(env, data.id));
      entry.Set("read", Napi::Boolean::New(env, data.read));
      entry.Set("write", Napi::Boolean::New(env, data.write));
      entry.Set("execute", Napi::Boolean::New(env, data.execute));
      result.Set(static_cast<uint32_t>(i), entry);
    }
    return result;
  }
};

struct SetAclOperation {
  std::string path;
  acl_type_t type;
  std::vector<EntryData> entries;

  Failure Run() {
    AclHandle acl(acl_init(static_cast<int>(entries.size())));
    if (acl.get() == nullptr) return {errno, "acl_init"};
    for (const EntryData& data : entries) {
      if (Failure failure = AddEntry(acl.address(), data)) return failure;
    }
    // acl_valid(3) catches what the kernel would reject less clearly: missing base entries, a
    // missing mask beside named entries, duplicates.
    if (acl_valid(acl.get()) == -1) return {errno, "acl_valid"};

    NoFollowPath target;
    if (Failure failure = target.Open(path, "acl_set_file")) return failure;
    if (acl_set_file(target.procPath(), type, acl.get()) == -1) return {errno, "acl_set_file"};
    return {};
  }

  Napi::Value Result(Napi::Env env) const { return env.Undefined(); }

 private:
  static Failure AddEntry(acl_t* acl, const EntryData& data) {
    acl_entry_t entry;
    if (acl_create_entry(acl, &entry) == -1) return {errno, "acl_create_entry"};
    if (acl_set_tag_type(entry, data.tag) == -1) return {errno, "acl_set_tag_type"};
    if (data.tag == ACL_USER) {
      uid_t uid = data.id;
      if (acl_set_qualifier(entry, &uid) == -1) return {errno, "acl_set_qualifier"};
    } else if (data.tag == ACL_GROUP) {
      gid_t gid = data.id;
      if (acl_set_qualifier(entry, &gid) == -1) return {errno, "acl_set_qualifier"};
    }
    acl_permset_t permset;
    if (acl_get_permset(entry, &permset) == -1) return {errno, "acl_get_permset"};
    if (acl_clear_perms(permset) == -1) return {errno, "acl_clear_perms"};
    if (data.read && acl_add_perm(permset, ACL_READ) == -1) return {errno, "acl_add_perm"};
    if (data.write && acl_add_perm(permset, ACL_WRITE) == -1) return {errno, "acl_add_perm"};
    if (data.execute && acl_add_perm(permset, ACL_EXECUTE) == -1) return {errno, "acl_add_perm"};
    if (acl_set_permset(entry, permset) == -1) return {errno, "acl_set_permset"};
    return {};
  }
};

struct DeleteDefaultAclOperation {
  std::string path;

  Failure Run() {
    NoFollowPath target;
    if (Failure failure = target.Open(path, "acl_delete_def_file")) return failure;
    if (acl_delete_def_file(target.procPath()) == -1) return {errno, "acl_delete_def_file"};
    return {};
  }

  Napi::Value Result(Napi::Env env) const { return env.Undefined(); }
};

struct ExtendedAclOperation {
  std::string path;
  bool extended = false;

  Failure Run() {
    NoFollowPath target;
    if (Failure failure = target.Open(path, "acl_extended_file")) return failure;
    // True when the access ACL has more than the three base entries, or a default ACL exists.
    int result = acl_extended_file(target.procPath());
    if (result == -1) return {errno, "acl_extended_file"};
    extended = result == 1;
    return {};
  }

  Napi::Value Result(Napi::Env env) const { return Napi::Boolean::New(env, extended); }
};

template <typename Operation>
class AclWorker : public Napi::AsyncWorker {
 public:
  AclWorker(Napi::Env env, Operation operation)
      : Napi::AsyncWorker(env, "shuttle.acl"),
        deferred_(Napi::Promise::Deferred::New(env)),
        operation_(std::move(operation)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { failure_ = operation_.Run(); }

  void OnOK() override {
    Napi::Env env = Env();
    if (failure_) {
      deferred_.Reject(SystemError(env, failure_.errnum, failure_.syscall, &operation_.path).Value());
    } else {
      deferred_.Resolve(operation_.Result(env));
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Operation operation_;
  Failure failure_;
};

template <typename Operation>
Napi::Value RunAsync(Napi::Env env, Operation operation) {
  auto* worker = new AclWorker<Operation>(env, std::move(operation));
  Napi::Promise promise = worker->Promise();
  // The worker deletes itself once OnOK/OnError has run.
  worker->Queue();
  return promise;
}

template <typename Operation>
Napi::Value RunSync(Napi::Env env, Operation operation) {
  if (Failure failure = operation.Run()) throw SystemError(env, failure.errnum, failure.syscall, &operation.path);
  return operation.Result(env);
}

acl_type_t KindArgument(const Napi::CallbackInfo& info, size_t index) {
  std::string kind = StringArgument(info, index);
  if (kind == "access") return ACL_TYPE_ACCESS;
  if (kind == "default") return ACL_TYPE_DEFAULT;
  throw Napi::TypeError::New(info.Env(), "ACL kind must be 'access' or 'default'");
}

acl_tag_t TagArgument(Napi::Env env, const Napi::Value& value) {
  if (value.IsString()) {
    std::string tag = value.As<Napi::String>().Utf8Value();
    for (acl_tag_t candidate : {ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER}) {
      if (tag == TagName(candidate)) return candidate;
    }
  }
  throw Napi::TypeError::New(env, "ACL entry tag must be user_obj, user, group_obj, group, mask or other");
}

bool PermissionArgument(Napi::Env env, const Napi::Object& entry, const char* name) {
  Napi::Value value = entry.Get(name);
  if (!value.IsBoolean()) throw Napi::TypeError::New(env, std::string("ACL entry '") + name + "' must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::vector<EntryData> EntriesArgument(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  if (!info[index].IsArray()) throw Napi::TypeError::New(env, "ACL entries must be an array");
  Napi::Array array = info[index].As<Napi::Array>();

  std::vector<EntryData> entries;
  entries.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value value = array.Get(i);
    if (!value.IsObject()) throw Napi::TypeError::New(env, "ACL entries must be objects");
    Napi::Object object = value.As<Napi::Object>();

    EntryData data;
    data.tag = TagArgument(env, object.Get("tag"));
    if (HasQualifier(data.tag)) {
      Napi::Value id = object.Get("id");
      double number = id.IsNumber() ? id.As<Napi::Number>().DoubleValue() : -1;
      // (uid_t)-1 means "no id" to chown(2) and friends; it is never a real account.
      if (!(number >= 0 && number < UINT32_MAX) || number != static_cast<uint32_t>(number)) {
        throw Napi::TypeError::New(env, "ACL user and group entries need an integer id");
      }
      data.id = static_cast<uint32_t>(number);
    }
    data.read = PermissionArgument(env, object, "read");
    data.write = PermissionArgument(env, object, "write");
    data.execute = PermissionArgument(env, object, "execute");
    entries.push_back(data);
  }
  return entries;
}

}  // namespace

Napi::Value GetAcl(const Napi::CallbackInfo& info) {
  return RunAsync(info.Env(), GetAclOperation{PathArgument(info, 0), KindArgument(info, 1), {}});
}

Napi::Value GetAclSync(const Napi::CallbackInfo& info) {
  return RunSync(info.Env(), GetAclOperation{PathArgument(info, 0), KindArgument(info, 1), {}});
}

Napi::Value SetAcl(const Napi::CallbackInfo& info) {
  return RunAsync(info.Env(), SetAclOperation{PathArgument(info, 0), KindArgument(info, 1), EntriesArgument(info, 2)});
}

Napi::Value SetAclSync(const Napi::CallbackInfo& info) {
  return RunSync(info.Env(), SetAclOperation{PathArgument(info, 0), KindArgument(info, 1), EntriesArgument(info, 2)});
}

Napi::Value DeleteDefaultAcl(const Napi::CallbackInfo& info) {
  return RunAsync(info.Env(), DeleteDefaultAclOperation{PathArgument(info, 0)});
}

Napi::Value DeleteDefaultAclSync(const Napi::CallbackInfo& info) {
  return RunSync(info.Env(), DeleteDefaultAclOperation{PathArgument(info, 0)});
}

Napi::Value HasExtendedAcl(const Napi::CallbackInfo& info) {
  return RunAsync(info.Env(), ExtendedAclOperation{PathArgument(info, 0)});
}

Napi::Value HasExtendedAclSync(const Napi::CallbackInfo& info) {
  return RunSync(info.Env(), ExtendedAclOperation{PathArgument(info, 0)});
}

}  // namespace shuttle
