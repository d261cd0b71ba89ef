import type { BackupManifest, CheckName, CheckResult } from "../../contracts";
import { compareFiles, describeComparison, type Extraction } from "./extract";

/**
 * The "objects" check of DESIGN §4, which both the verifier and `restore` run on what they downloaded: the
 * archive's sha256 and size against the manifest, then every extracted file against its manifest entry.
 */

/** A verdict on the backup: the named check failed. The report says so and the message is deleted. */
export class CheckFailure extends Error {
  constructor(
    readonly check: CheckName,
    message: string,
  ) {
    super(message);
    this.name = "CheckFailure";
  }
}

/** The "objects" check: the archive's sha256 first (a corrupt download explains everything after it). */
export function judgeObjects(manifest: BackupManifest, extraction: Extraction): CheckResult {
  const fail = (detail: string): never => {
    throw new CheckFailure("objects", detail);
  };
  const { archive } = extraction;
  if (archive.sha256 !== manifest.archive.sha256) {
    fail(
      `archive sha256 mismatch: downloaded ${archive.sha256} (${archive.bytes} bytes), manifest says ${manifest.archive.sha256} (${manifest.archive.bytes} bytes)`,
    );
  }
  if (archive.bytes !== manifest.archive.bytes) {
    fail(`archive size mismatch: downloaded ${archive.bytes} bytes, manifest says ${manifest.archive.bytes}`);
  }
  if (extraction.unpackError !== null) fail(`the archive cannot be unpacked: ${extraction.unpackError}`);
  const differences = describeComparison(compareFiles(manifest.files, extraction.files));
  if (differences !== null) fail(`files differ from the manifest: ${differences}`);
  return {
    name: "objects",
    passed: true,
    detail: `archive sha256 ${archive.sha256} matches (${archive.bytes} bytes); all ${manifest.files.length} files match their sha256`,
  };
}
