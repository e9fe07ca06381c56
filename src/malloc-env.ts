/**
 * glibc's allocator settings for the long-lived processes cws starts itself: the hub on the
 * server (server-agent/hub/hub-client.ts) and a device's kept session (kept-session-wire.ts).
 * Node's Buffers, zstd's contexts and SQLite's pages come from malloc, and by default glibc
 * keeps what was freed: it raises its mmap threshold to the largest block freed so far
 * (scrypt's 32 MiB at the first enrollment, say), after which every buffer comes from arenas,
 * one per thread of the thread pool, that give memory back only from their top. Measured on a
 * 5,000-file push: the hub kept 123 MiB after it, 88 MiB with these; a kept session's peak over
 * a 5,000-file 1% change went from 115 to 105 MiB. One arena, buffers of 32 KiB and more
 * mapped on their own (unmapped when freed), and the top of the heap trimmed past 64 KiB of
 * free space. They only take effect at a process's start, so they go into its environment
 * (the user's own settings, if any, win). Other platforms ignore them.
 */
export const LOW_MEMORY_MALLOC_ENV = { MALLOC_ARENA_MAX: "1", MALLOC_MMAP_THRESHOLD_: "32768", MALLOC_TRIM_THRESHOLD_: "65536" } as const;
