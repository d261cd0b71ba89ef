/**
 * `npm run policy [-- --config FILE] [-- --stack Pulumi.dev.yaml …]`: the policy pack over every example
 * stack config, offline. Each stack program runs under Pulumi's mocks, every rule runs over what it
 * registers, and the result prints the way `pulumi preview --policy-pack policies` prints it.
 * Exit code: 0 when no mandatory violation, 1 when any, 2 when a stack or the config could not be read.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { PolicyPackConfig } from "@pulumi/policy";

import { evaluatePolicies, hasMandatoryViolations } from "./harness";
import { policies, POLICY_PACK_NAME } from "./pack";
import { formatReport } from "./report";
import { exampleStackConfigs, recordStack } from "./stackRecords";

interface Flags {
  config?: string;
  stacks: string[];
}

function parseFlags(argv: string[]): Flags {
  const flags: Flags = { stacks: [] };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if ((argv[i] === "--config" || argv[i] === "--stack") && value === undefined) {
      throw new Error(`${argv[i]} needs a file argument`);
    }
    if (argv[i] === "--config") flags.config = argv[++i];
    else if (argv[i] === "--stack") flags.stacks.push(path.resolve(argv[++i]));
    else
      throw new Error(
        `unknown argument ${argv[i]}; use --config FILE (PolicyPack config JSON) and --stack FILE`,
      );
  }
  return flags;
}

function readPackConfig(file: string | undefined): PolicyPackConfig {
  if (!file) return {};
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as PolicyPackConfig;
  } catch (error) {
    throw new Error(`cannot read the PolicyPack config ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function packVersion(): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "package.json"), "utf8")) as {
    version: string;
  };
  return manifest.version;
}

/** Runs the pack over each stack config and prints the reports; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  const config = readPackConfig(flags.config);
  const stacks = flags.stacks.length > 0 ? flags.stacks : exampleStackConfigs();
  if (stacks.length === 0)
    throw new Error("no Pulumi.<stack>.yaml found next to Pulumi.yaml; pass --stack FILE");
  let blocked = false;
  for (const stack of stacks) {
    const records = await recordStack(stack).catch((error: unknown) => {
      throw new Error(
        `the stack program failed under mocks for ${path.basename(stack)}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    });
    const report = await evaluatePolicies(policies, records, { config, packEnforcementLevel: "mandatory" });
    console.log(
      formatReport(
        { stack: path.basename(stack), packName: POLICY_PACK_NAME, packVersion: packVersion() },
        report,
      ),
    );
    blocked ||= hasMandatoryViolations(report);
  }
  console.log(blocked ? "Policy check FAILED: fix the mandatory violations above." : "Policy check passed.");
  return blocked ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(`policy check could not run: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(2);
    },
  );
}
