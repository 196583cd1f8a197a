// The whole export table, in one place. src/native.ts declares the matching TypeScript interface.
#include "shuttle.h"

namespace shuttle {
namespace {

void Export(Napi::Env env, Napi::Object exports, const char* name, Napi::Function::Callback callback) {
  exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "setLease", SetLease);
  Export(env, exports, "getLease", GetLease);
  Export(env, exports, "lockExclusive", LockExclusive);
  Export(env, exports, "clamdScanDescriptor", ClamdScanDescriptor);
  Export(env, exports, "clamdScanDescriptors", ClamdScanDescriptors);
  Export(env, exports, "sdNotify", SdNotify);
  Export(env, exports, "syncDescriptors", SyncDescriptors);
  Export(env, exports, "createFiles", CreateFiles);
  Export(env, exports, "closeDescriptors", CloseDescriptors);
  Export(env, exports, "changeNames", ChangeNames);
  Export(env, exports, "getAcl", GetAcl);
  Export(env, exports, "getAclSync", GetAclSync);
  Export(env, exports, "setAcl", SetAcl);
  Export(env, exports, "setAclSync", SetAclSync);
  Export(env, exports, "deleteDefaultAcl", DeleteDefaultAcl);
  Export(env, exports, "deleteDefaultAclSync", DeleteDefaultAclSync);
  Export(env, exports, "hasExtendedAcl", HasExtendedAcl);
  Export(env, exports, "hasExtendedAclSync", HasExtendedAclSync);
  return exports;
}

}  // namespace shuttle

static Napi::Object InitShuttleNative(Napi::Env env, Napi::Object exports) { return shuttle::Init(env, exports); }

NODE_API_MODULE(shuttle_native, InitShuttleNative)
