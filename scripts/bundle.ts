/**
 * Bundles the host scripts (hostscripts/cli.ts) into one executable CommonJS file for Node 20.
 * The components ship this file to replicas and verifiers; its sha256 drives the re-install
 * triggers and the new version of the verifiers' bundle object. `npm run bundle` calls it.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { build } from "esbuild";

const ROOT = path.resolve(__dirname, "..");

/** Where the bundle and its entry live. */
export interface BundleOptions {
  /** Defaults to hostscripts/cli.ts. */
  entry?: string;
  /** Defaults to dist/mysql-backup.cjs. */
  outfile?: string;
}

/** The bundle that was written. */
export interface Bundle {
  path: string;
  sha256: string;
  bytes: number;
}

/** The default bundle location, which the stack program ships. */
export const BUNDLE_PATH = path.join(ROOT, "dist", "mysql-backup.cjs");

/** Builds the bundle and returns its path and sha256. */
export async function bundleHostScripts(options: BundleOptions = {}): Promise<Bundle> {
  const entry = options.entry ?? path.join(ROOT, "hostscripts", "cli.ts");
  const outfile = options.outfile ?? BUNDLE_PATH;
  if (!fs.existsSync(entry)) {
    throw new Error(
      `cannot bundle the host scripts: ${entry} does not exist (the CLI entry of hostscripts/)`,
    );
  }
  // Written beside the target and renamed: concurrent test runs never read a half-written bundle.
  const partial = `${outfile}.${process.pid}.${Date.now()}.partial`;
  const result = await build({
    entryPoints: [entry],
    outfile: partial,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    banner: { js: "#!/usr/bin/env node" },
    // hostscripts/common/version.ts: the bundle hashes its own file for `--version`.
    define: { MYSQL_BACKUP_BUNDLED: "true" },
    sourcemap: false,
    legalComments: "none",
    logLevel: "silent",
  });
  if (result.errors.length > 0) {
    throw new Error(`esbuild failed on ${entry}: ${result.errors.map((e) => e.text).join("; ")}`);
  }
  fs.chmodSync(partial, 0o755);
  const content = fs.readFileSync(partial);
  fs.renameSync(partial, outfile);
  return { path: outfile, sha256: createHash("sha256").update(content).digest("hex"), bytes: content.length };
}

if (require.main === module) {
  bundleHostScripts().then(
    (b) => console.log(`${path.relative(process.cwd(), b.path)} ${b.bytes} bytes sha256 ${b.sha256}`),
    (e: Error) => {
      console.error(e.message);
      process.exit(1);
    },
  );
}
