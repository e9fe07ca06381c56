/**
 * The benchmark's system dependencies: OpenSSH (server and client), rsync, GNU time and,
 * optionally, Unison. On a fresh Debian machine where we are root, missing ones are installed
 * with apt-get; elsewhere the exact command to run is printed instead.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

interface Dependency {
  /** A program that must exist: an absolute path, or a name looked up on PATH. */
  program: string;
  /** The Debian package that provides it. */
  debian: string;
  /** Whether the benchmark can run without it (Unison is compared only where installed). */
  optional: boolean;
}

const DEPENDENCIES: readonly Dependency[] = [
  { program: "rsync", debian: "rsync", optional: false },
  { program: "/usr/sbin/sshd", debian: "openssh-server", optional: false },
  { program: "ssh", debian: "openssh-client", optional: false },
  { program: "ssh-keygen", debian: "openssh-client", optional: false },
  { program: "/usr/bin/time", debian: "time", optional: false },
  { program: "unison", debian: "unison", optional: true },
];

/** The one command that installs everything the benchmark can use. */
export const INSTALL_HINT = "apt-get install -y rsync unison openssh-server openssh-client time";

function present(program: string): boolean {
  if (path.isAbsolute(program)) return existsSync(program);
  return (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir !== "" && existsSync(path.join(dir, program)));
}

/** Options for {@link ensureDependencies}. */
export interface EnsureOptions {
  /**
   * Whether to run apt-get for missing packages (only as root on a machine with apt-get).
   *
   * @default {true}
   */
  install?: boolean;
  log(message: string): void;
}

/**
 * Makes sure the required programs exist, installing missing Debian packages where allowed.
 * Returns the optional ones still missing; throws (with the command to run) if a required
 * one is missing.
 */
export function ensureDependencies(options: EnsureOptions): { missingOptional: string[] } {
  const { install = true, log } = options;
  let missing = DEPENDENCIES.filter((d) => !present(d.program));
  const packages = [...new Set(missing.map((d) => d.debian))];
  const canInstall = install && process.getuid?.() === 0 && present("apt-get");
  if (packages.length > 0 && canInstall) {
    log(`installing missing Debian packages: ${packages.join(" ")}`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const aptInstall = (): boolean =>
      spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { stdio: ["ignore", "ignore", "inherit"], env }).status === 0;
    // A fresh machine may have no package lists yet; fetch them only when the install needs it.
    if (!aptInstall()) {
      spawnSync("apt-get", ["update", "-q"], { stdio: ["ignore", "ignore", "inherit"], env });
      aptInstall();
    }
    missing = DEPENDENCIES.filter((d) => !present(d.program));
  }
  const required = missing.filter((d) => !d.optional);
  if (required.length > 0) {
    const names = [...new Set(required.map((d) => d.debian))].join(" ");
    throw new Error(
      `Cannot run the benchmark as ${required.map((d) => d.program).join(", ")} ${required.length === 1 ? "is" : "are"} missing: ` +
        `install them with \`apt-get install -y ${names}\` (or everything the benchmark can use: \`${INSTALL_HINT}\`)`,
    );
  }
  return { missingOptional: missing.map((d) => d.debian) };
}

/** The first line of a program's version output, or "not installed". */
export function versionOf(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (result.error !== undefined) return "not installed";
  const text = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim();
  return text.split("\n")[0]?.trim() || "unknown";
}

/** CPU model, cores, memory and OS of this machine, for the report. */
export function machineInfo(): { cpu: string; cores: number; memoryGiB: number; os: string; kernel: string } {
  const read = (file: string): string => {
    try {
      return readFileSync(file, "utf8");
    } catch {
      return "";
    }
  };
  const cpu = /^model name\s*:\s*(.+)$/m.exec(read("/proc/cpuinfo"))?.[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown";
  const memKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(read("/proc/meminfo"))?.[1] ?? os.totalmem() / 1024);
  const osName = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(read("/etc/os-release"))?.[1] ?? process.platform;
  const kernel = read("/proc/sys/kernel/osrelease").trim() || os.release();
  // nproc counts the CPUs this process may use (cgroup/affinity), which is what matters here.
  const cores = os.availableParallelism();
  return { cpu, cores, memoryGiB: Math.round((memKiB / 1024 / 1024) * 10) / 10, os: osName, kernel };
}
