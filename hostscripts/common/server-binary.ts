import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { ServerFlavor } from "../../contracts";
import { PipelineError, messageOf } from "./errors";

/**
 * The MySQL/MariaDB server binary of a host that restores backups: which one it is, what it reports itself
 * as, and whether it can open a given backup's datadir. The verifier asks before each restore; `check` asks
 * before the first one.
 */

/** The server binary: the configured one, else the first of mariadbd, mysqld on PATH or in /usr/sbin. */
export async function findServerBinary(
  configured: string | undefined,
  path = process.env.PATH ?? "",
): Promise<string> {
  const candidates = configured
    ? configured.includes("/")
      ? [configured]
      : searchPath(configured, path)
    : [...searchPath("mariadbd", path), ...searchPath("mysqld", path)];
  for (const candidate of candidates) {
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  throw new PipelineError(
    "VerifierInfrastructure",
    `no MySQL/MariaDB server binary found (${configured ?? "mariadbd, mysqld"} on PATH and /usr/sbin)`,
    "install the server package on the verifier host or set mysqld.binary in the config; the message will be retried",
  );
}

function searchPath(name: string, path: string): string[] {
  const dirs = [...path.split(delimiter).filter(Boolean), "/usr/sbin", "/usr/local/sbin", "/sbin"];
  return [...new Set(dirs)].map((dir) => join(dir, name));
}

/** A server build: its flavor and version, as `--version` prints them. */
export interface ServerBuild {
  flavor: ServerFlavor;
  version: string;
}

/**
 * Reads `mariadbd --version` / `mysqld --version` output: `mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for …`
 * or `mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)`.
 */
export function parseServerBuild(text: string): ServerBuild | null {
  const match = /\bVer\s+(\d+\.\d+\.\d+)(\S*)/.exec(text);
  if (match === null) return null;
  return { flavor: /mariadb/i.test(match[2] + text) ? "mariadb" : "mysql", version: match[1] };
}

const series = (version: string): [number, number] => {
  const [major, minor] = version.split(".").map(Number);
  return [major ?? 0, minor ?? 0];
};

/**
 * Why `host` cannot restore a backup of `backup`, or null when it can. A server opens a datadir of its
 * own flavor from its own or an older series (it upgrades in place); never the other flavor's, and never a
 * newer series' (downgrades are not supported by MySQL or MariaDB).
 */
export function whyCannotRun(host: ServerBuild, backup: ServerBuild): string | null {
  const needs = `the backup was taken on ${backup.flavor} ${backup.version}`;
  if (host.flavor !== backup.flavor) {
    return `${needs}; this verifier runs ${host.flavor} ${host.version}, which cannot open a ${backup.flavor} datadir`;
  }
  const [hostMajor, hostMinor] = series(host.version);
  const [major, minor] = series(backup.version);
  if (hostMajor < major || (hostMajor === major && hostMinor < minor)) {
    return `${needs}; this verifier runs ${host.flavor} ${host.version}, an older series that cannot open it`;
  }
  return null;
}

/** What the server binary is; a binary that does not answer is the verifier's problem. */
export async function readServerBuild(binary: string): Promise<ServerBuild> {
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
    child.once("error", reject);
    child.once("close", () => resolve(text));
  }).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot run ${binary} --version: ${messageOf(error)}`,
      "check the server package on the verifier host or mysqld.binary in the config; the message will be retried",
      { cause: error },
    );
  });
  const build = parseServerBuild(output);
  if (build === null) {
    throw new PipelineError(
      "VerifierInfrastructure",
      `${binary} --version printed no version: ${output.trim().slice(0, 200) || "(nothing)"}`,
      "point mysqld.binary at a MySQL or MariaDB server binary; the message will be retried",
    );
  }
  return build;
}
