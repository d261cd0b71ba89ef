import { constants } from "node:fs";
import { access, mkdtemp, rm, stat } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { humanBytes } from "../common/output";
import type { Checklist } from "./findings";

/**
 * What `check` proves of the host itself: the commands the run starts are installed, the directories it
 * writes are writable, and the volumes they are on have room.
 */

/** Where `runCommand` finds commands: PATH, then root's sbin directories (common/snapshot/driver.ts). */
export function commandPath(env: NodeJS.ProcessEnv = process.env): string[] {
  return [
    ...new Set([...(env.PATH ?? "/usr/bin:/bin").split(delimiter).filter(Boolean), "/usr/sbin", "/sbin"]),
  ];
}

/** The executable `command` resolves to on `path`, or null. */
export async function which(command: string, path: string[]): Promise<string | null> {
  const candidates = command.includes("/") ? [command] : path.map((dir) => join(dir, command));
  for (const candidate of candidates) {
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return null;
}

/** One finding for a set of commands: every one found, or the missing ones named with the package to install. */
export async function checkTools(
  list: Checklist,
  check: string,
  tools: ReadonlyArray<{ command: string; for: string; package: string; optional?: string }>,
  path: string[],
): Promise<void> {
  const found = await Promise.all(tools.map(async (t) => ({ ...t, at: await which(t.command, path) })));
  const missing = found.filter((t) => t.at === null && t.optional === undefined);
  const optional = found.filter((t) => t.at === null && t.optional !== undefined);
  const packages = (ts: typeof found) => [...new Set(ts.map((t) => t.package))].join(" ");
  if (missing.length > 0) {
    list.fail(
      check,
      `not installed: ${missing.map((t) => `${t.command} (${t.for})`).join(", ")} (searched ${path.join(":")})`,
      `apt-get install ${packages(missing)} (or your distribution's packages), then check again`,
    );
  } else if (optional.length > 0) {
    list.warn(
      check,
      `not installed: ${optional.map((t) => `${t.command} (${t.optional})`).join(", ")}`,
      `apt-get install ${packages(optional)}`,
    );
  } else {
    list.pass(check, found.map((t) => t.at).join(", "));
  }
}

/**
 * Proves the run can write in `dir` by creating and removing a directory in it; a `dir` that does not exist
 * yet must have a writable existing parent (the run creates it). Returns the directory that exists.
 */
export async function checkWritableDir(
  list: Checklist,
  check: string,
  dir: string,
  what: string,
): Promise<string> {
  const existing = await nearestExisting(dir);
  if ((await stat(existing)).isDirectory() === false) {
    throw new Error(`${existing} is not a directory, so ${what} ${dir} cannot be created`);
  }
  const probe = await mkdtemp(join(existing, ".mysql-backup-check-"));
  await rm(probe, { recursive: true, force: true });
  if (existing === dir) list.pass(check, `${what} ${dir} is writable`);
  else
    list.warn(
      check,
      `${what} ${dir} does not exist yet; ${existing} is writable, so the run creates it`,
      `mkdir -p ${dir}`,
    );
  return existing;
}

/** `dir` itself, or its nearest ancestor that exists. */
export async function nearestExisting(dir: string): Promise<string> {
  let current = dir;
  while (
    !(await access(current).then(
      () => true,
      () => false,
    ))
  ) {
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  return current;
}

/** "12.3 GiB free" and friends, for details. */
export function describeFree(bytes: number): string {
  return `${humanBytes(bytes)} free`;
}
