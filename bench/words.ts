/**
 * Vocabulary for the benchmark's generated text. The words come roughly in order of how often
 * they occur in English technical prose, and the generator draws them with a Zipf-like bias
 * towards the front, so the text compresses about as well as real notes and transcripts do
 * (zlib and zstd both see repeated common words and a long tail of rarer ones).
 */

/** Common English words, most frequent first. */
export const COMMON_WORDS: readonly string[] = (
  "the of and to a in is that for it as with be on not this by are or from at an but which " +
  "have can we was if you will all one has more when there so been their they what its also " +
  "would into only other then than these some like each may should could about new used use " +
  "first any how just our out two time way up most where over after such must because both " +
  "here same does need make see well between through before under while without again still " +
  "every another those many much very even back since them now three same before however " +
  "instead already rather often later during against within around never always usually next " +
  "last once less least enough almost ever further perhaps whether though although either " +
  "neither nor yet soon quite simply clearly directly exactly fully mostly nearly partly " +
  "really slightly truly actually early easily finally generally likely quickly recently"
).split(" ");

/** Technical vocabulary of a software workspace: notes, plans, transcripts. */
export const TECH_WORDS: readonly string[] = (
  "file files folder path paths change changes sync server client device devices state " +
  "version manifest chunk chunks hash hashes snapshot snapshots commit push pull merge " +
  "conflict conflicts lease token agent session sessions thread threads rollout transcript " +
  "note notes plan plans task tasks test tests build builds error errors warning log logs " +
  "config option options setting settings value values key keys index table query cache " +
  "request response message messages event events stream streams buffer bytes size limit " +
  "timeout retry network connection socket channel protocol frame frames header payload " +
  "schema field fields record records entry entries list map set queue stack tree node " +
  "function method class module package import export interface type types object array " +
  "string number boolean null default return result results input output source target " +
  "script command commands shell terminal process processes worker workers job jobs " +
  "release deploy staging production branch branches review reviews issue issues patch " +
  "diff diffs line lines column columns row rows report reports metric metrics latency " +
  "throughput memory disk storage backup restore quarantine policy rule rules check checks " +
  "user users team project projects workspace superproject skill skills template templates " +
  "markdown heading section sections paragraph summary draft outline decision decisions " +
  "context prompt model models reasoning tool tools call calls output outputs argument " +
  "arguments parameter parameters dependency dependencies library libraries runtime " +
  "compiler linter formatter benchmark benchmarks baseline regression performance " +
  "security permission permissions encryption signature certificate credential " +
  "migration migrations database transaction transactions lock locks watcher scanner " +
  "parser serializer encoder decoder adapter handler handlers endpoint endpoints transport " +
  "windows linux macos powershell bash docker container image images volume volumes " +
  "upstream downstream incremental atomic idempotent deterministic concurrent parallel " +
  "sequential recursive asynchronous synchronous optional required deprecated experimental " +
  "stable unstable flaky broken fixed pending blocked resolved accepted rejected archived " +
  "monday tuesday wednesday thursday friday morning afternoon evening week month quarter"
).split(/\s+/);

/** Verbs for sentences and task lists. */
export const VERBS: readonly string[] = (
  "add remove update fix check verify write read move rename copy delete create open close " +
  "start stop run rerun skip keep drop split join sort filter parse validate compress " +
  "decompress upload download send receive apply revert reset retry measure compare " +
  "document describe explain review test refactor simplify extend replace migrate rebuild " +
  "schedule track report log record store load cache flush lock release watch scan hash"
).split(" ");

/** Identifier-like names for JSON keys, tool arguments and code snippets. */
export const IDENTIFIERS: readonly string[] = (
  "id name title status priority owner created updated enabled timeout retries maxBytes " +
  "minBytes chunkSize concurrency batchSize interval threshold ratio path root roots host " +
  "port user identity knownHosts cipher compression level mode tags labels items entries " +
  "children parent version schema checksum digest lastSync lastSeen device deviceId " +
  "sessionId threadId turnId callId model provider effort summary approval sandbox " +
  "writableRoots networkAccess env args command cwd exitCode durationMs stdout stderr"
).split(" ");

/** Shell commands a coding agent typically runs, for function-call arguments. */
export const SHELL_COMMANDS: readonly string[] = [
  "ls -la",
  "git status --short",
  "git diff --stat",
  "npm test",
  "npm run typecheck",
  "rg -n TODO src",
  "cat package.json",
  "sed -n 1,120p src/index.ts",
  "node --test src/core/diff.test.ts",
  "git log --oneline -n 20",
  "find . -name '*.md' -newer README.md",
  "du -sh node_modules",
];
