/**
 * `npm run soak`: the fault suite's rounds by the hundred, for running by hand (see
 * test/soak/fault-driver.ts for what each round does and checks). Prints one line per round
 * and the figures at the end; exits 1 when any check failed.
 *
 *   npm run soak -- [--rounds 300] [--seed 1]
 */
import { parseArgs } from "node:util";
import { runFaultRounds } from "./fault-driver.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "300" }, seed: { type: "string", default: String(Date.now() % 1_000_000) } } });
const rounds = Number(values.rounds);
const seed = Number(values.seed);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(seed)) {
  process.stderr.write("usage: npm run soak -- [--rounds <n>] [--seed <n>]\n");
  process.exit(1);
}
const figures = await runFaultRounds({ seed, rounds, log: (line) => process.stdout.write(`${line}\n`) });
process.stdout.write(`\n${JSON.stringify(figures, null, 2)}\n`);
process.stdout.write(
  `\nsoak: ${figures.rounds} rounds (seed ${figures.seed}) in ${Math.round(figures.durationMs / 1000)} s: ` +
    `${figures.kills.total} kills (client ${figures.kills.client}, agent ${figures.kills.agent}, hub ${figures.kills.hub}), ` +
    `corrupt snapshots ${figures.corruptSnapshots}, lost files ${figures.lostFiles}, unexpected files ${figures.unexpectedFiles}, ` +
    `blocked devices ${figures.blockedDevices}, leftovers ${figures.leftovers}\n`,
);
process.exitCode = figures.problems.length === 0 ? 0 : 1;
