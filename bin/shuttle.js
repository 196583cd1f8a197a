#!/usr/bin/env node
// libuv sizes its thread pool once, on the first fs or crypto call. Set it before anything can make one,
// which is why the CLI is loaded with a dynamic import below rather than a static one. The pipeline keeps
// several copies, hashes and scans in flight; the default 4 threads would serialise them.
process.env.UV_THREADPOOL_SIZE ??= '16';

const { main } = await import('../dist/src/cli.js');
process.exitCode = await main(process.argv.slice(2));
