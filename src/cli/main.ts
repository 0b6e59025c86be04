#!/usr/bin/env -S node --max-semi-space-size=2 --expose-gc --no-concurrent-array-buffer-sweeping
// --max-semi-space-size keeps V8's young generation small (2 MB semi-spaces
// instead of up to 16 MB): a streaming server allocates many short-lived
// buffers, and a large young generation only adds resident memory (about
// 20 MB) without making uploads faster. --expose-gc lets the server run minor
// collections paced to the buffers it streams (src/runtime/gc-pacer.ts).
// --no-concurrent-array-buffer-sweeping frees those buffers inside the
// collection instead of in a background task. Measured: 1 GiB GETs relayed
// from S3 ran about 50% faster with it, at the same peak memory; most likely
// because, with a collection every few MiB streamed, each one would wait for
// the previous one's background task, which on a busy machine waits for a
// core. See docs/memory.md.
//
// Started as plain `node dist/cli/main.js` (a Dockerfile CMD, a systemd unit),
// Node gets none of these flags, and applyMemorySettings() sets their effects
// from inside. It must run before the rest of the program is even loaded, not
// merely evaluated: Node parses and links every statically imported module
// before running the first one, and V8 grows the young generation while it
// does (measured: 4 MB semi-spaces instead of 1 MB, and 8-11 MB more peak RSS
// for a 1 GiB upload). Hence this small entry point and a dynamic import.
import { applyMemorySettings } from '../runtime/node-flags.js';

applyMemorySettings();
await import('./program.js');
