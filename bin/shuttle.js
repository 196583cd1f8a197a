#!/usr/bin/env node
// libuv sizes its thread pool once, on its first job. Node loads an ES module entry point with an
// asynchronous read, which is such a job, so this file is CommonJS (see bin/package.json): it is read
// synchronously, and the variable below is in place before the CLI, an ES module, is imported. The
// pipeline keeps several copies, hashes, fsyncs and scans in flight; the default 4 threads would
// serialise them.
'use strict';

// An empty value counts as unset.
process.env.UV_THREADPOOL_SIZE ||= '16';

import('../dist/src/cli.js')
  .then(({ main }) => main(process.argv.slice(2)))
  .then((code) => {
    process.exitCode = code;
  });
