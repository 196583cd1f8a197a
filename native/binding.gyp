{
  "targets": [
    {
      "target_name": "shuttle_native",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/lease.cc",
        "src/clamd.cc",
        "src/notify.cc",
        "src/acl.cc",
        "src/batch.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags": [ "-fstack-protector-strong", "-Wall", "-Wextra" ],
      "libraries": [ "-lacl" ]
    }
  ]
}
