import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { version } from "../../package.json";

/**
 * What `mysql-backup --version` reports: the package version, and the sha256 of the bundle that is running.
 * A bundle cannot carry its own hash, so it hashes its own file when asked: the same bytes the stack
 * installed (`scripts/bundle.ts` reports the hash it built, the ReplicaAgent keys installs on it), so the
 * two can be compared on a host. esbuild replaces `MYSQL_BACKUP_BUNDLED` with `true` in the bundle; run from
 * source (bin/mysql-backup.js through tsx) the identifier does not exist and there is no bundle to hash.
 */

declare const MYSQL_BACKUP_BUNDLED: boolean | undefined;

/** The running CLI's identity. */
export interface VersionInfo {
  /** `version` of package.json at build time. */
  version: string;
  /** The bundle file that is running and its sha256, or null when running from source. */
  bundle: { path: string; sha256: string } | null;
}

/** The version, and the running bundle's sha256 (`file` is the bundle's path; defaults to this module's). */
export async function versionInfo(file: string = __filename): Promise<VersionInfo> {
  const bundled = typeof MYSQL_BACKUP_BUNDLED !== "undefined" && MYSQL_BACKUP_BUNDLED;
  if (!bundled) return { version, bundle: null };
  return { version, bundle: { path: file, sha256: await sha256OfFile(file) } };
}

/** The sha256 of a file, streamed. */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** `mysql-backup 0.1.0` and the bundle line, for people. */
export function describeVersion(info: VersionInfo): string {
  return [
    `mysql-backup ${info.version}`,
    info.bundle === null
      ? "running from source (not a bundle: no sha256)"
      : `bundle ${info.bundle.path} sha256 ${info.bundle.sha256}`,
  ].join("\n");
}
