/**
 * `cws session status|stop`: this device's kept session (src/client/kept-session.ts), the
 * background process that keeps a session with the server open between one-shot syncs; and
 * `cws session run`, how a sync starts it (hidden: people do not run it themselves).
 */
import type { Command } from "commander";
import { printJson, println } from "./output.ts";

export function registerSessionCommands(program: Command): void {
  const session = program
    .command("session")
    .description("Show or stop this device's kept session: the background connection to the server that makes the next `cws sync` fast (see `cws sync --help`).");

  session
    .command("status")
    .description("Show whether this device's kept session runs, and until when.")
    .option("--json", "print machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const { clientHome } = await import("../client/home.ts");
      const { keepSessionSeconds, keptSessionPid, keptSessionStatus, keptLogPath } = await import("../client/kept-session-wire.ts");
      const home = clientHome();
      const status = await keptSessionStatus(home);
      const pid = status?.pid ?? (await keptSessionPid(home));
      if (flags.json) {
        printJson({ ok: true, running: status !== null, answering: status !== null, pid, status, keepSessionSeconds: keepSessionSeconds(), log: keptLogPath(home) });
        return;
      }
      if (status === null) {
        println(pid === null
          ? "No kept session runs on this device. The next `cws sync` that runs on its own starts one."
          : `A kept session process (pid ${pid}) exists but does not answer; the next \`cws sync\` runs on its own. \`cws session stop\` ends it.`);
        if (keepSessionSeconds() === 0) println("Kept sessions are off (CWS_KEEP_SESSION=0).");
        return;
      }
      const idle = status.running !== null ? `running a sync of ${status.running}` : status.idleExitAt === null ? "idle" : `idle; exits at ${new Date(status.idleExitAt).toLocaleTimeString()} unless a sync comes`;
      println(`Kept session (pid ${status.pid}) with ${status.server}, since ${new Date(status.startedAt).toLocaleString()}: ${status.syncs} sync(s), ${idle}.`);
      println(`It exits after ${status.idleSeconds} s without a sync. Log: ${keptLogPath(home)}`);
    });

  session
    .command("stop")
    .description("Stop this device's kept session (after the sync it is running, if any).")
    .option("--json", "print machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const { clientHome } = await import("../client/home.ts");
      const { keptSessionPid, stopKeptSession } = await import("../client/kept-session-wire.ts");
      const home = clientHome();
      let pid = await stopKeptSession(home);
      let how = "stopped";
      if (pid === null) {
        // A process that holds the lock but does not answer (stuck) is ended by its pid.
        pid = await keptSessionPid(home);
        if (pid !== null) {
          process.kill(pid, "SIGTERM");
          how = "sent SIGTERM";
        }
      }
      if (flags.json) printJson({ ok: true, stopped: pid !== null, pid });
      else println(pid === null ? "No kept session runs on this device." : `Kept session (pid ${pid}) ${how}.`);
    });

  session
    .command("run", { hidden: true })
    .description("Run this device's kept session in the foreground (a sync starts it in the background).")
    .action(async () => {
      const { clientHome } = await import("../client/home.ts");
      const { keepSessionSeconds } = await import("../client/kept-session-wire.ts");
      const seconds = keepSessionSeconds();
      if (seconds === 0) return;
      const [{ runKeptSession }, { StateStore }, { connectAsDevice }, { describeFailure }] = await Promise.all([
        import("../client/kept-session.ts"), import("../client/state.ts"), import("../client/connect.ts"), import("./failure.ts"),
      ]);
      const home = clientHome();
      const logs = (await StateStore.open(home)).logsDir();
      await runKeptSession({
        home,
        idleMs: seconds * 1000,
        connect: (state) => connectAsDevice(state),
        describe: (error) => {
          const failure = describeFailure(error, logs);
          return { code: failure.code, message: failure.message, ...(failure.data === undefined ? {} : { data: failure.data }) };
        },
      });
      // Nothing else is left to do; a handle some library left open must not keep it running.
      process.exit(0);
    });
}
