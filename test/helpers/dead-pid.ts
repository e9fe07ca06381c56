/** A pid no process has right now (the highest pids are free on any test machine). */
export function deadPid(): number {
  for (let pid = 4_194_000; ; pid--) {
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ESRCH") return pid;
    }
  }
}
