#include <uv.h>

#include <climits>

#include "shuttle.h"

namespace shuttle {

Napi::Error SystemError(Napi::Env env, int errnum, const char* syscall, const std::string* path) {
  // libuv (exported by the node binary) supplies the same code names and texts that Node's own fs
  // errors carry, so callers can treat these exactly like errors from node:fs. libuv errors are
  // negated errno values on Unix.
  char code[64];
  char description[256];
  uv_err_name_r(-errnum, code, sizeof code);
  uv_strerror_r(-errnum, description, sizeof description);

  std::string message = std::string(code) + ": " + description + ", " + syscall;
  if (path != nullptr) message += " '" + *path + "'";

  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object fields = error.Value();
  fields.Set("errno", Napi::Number::New(env, -errnum));
  fields.Set("code", Napi::String::New(env, code));
  fields.Set("syscall", Napi::String::New(env, syscall));
  if (path != nullptr) fields.Set("path", Napi::String::New(env, *path));
  return error;
}

int DescriptorArgument(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = info[index];
  if (!value.IsNumber()) throw Napi::TypeError::New(info.Env(), "file descriptor must be a number");
  double fd = value.As<Napi::Number>().DoubleValue();
  if (!(fd >= 0 && fd <= INT_MAX) || fd != static_cast<int>(fd)) {
    throw Napi::RangeError::New(info.Env(), "file descriptor must be a non-negative integer");
  }
  return static_cast<int>(fd);
}

std::string StringArgument(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = info[index];
  if (!value.IsString()) throw Napi::TypeError::New(info.Env(), "argument must be a string");
  return value.As<Napi::String>().Utf8Value();
}

std::string PathArgument(const Napi::CallbackInfo& info, size_t index) {
  std::string path = StringArgument(info, index);
  // A NUL would silently cut the path short at the C boundary and name a different file.
  if (path.empty() || path.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(info.Env(), "path must be a non-empty string without NUL bytes");
  }
  return path;
}

}  // namespace shuttle
