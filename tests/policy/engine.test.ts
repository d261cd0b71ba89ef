import * as path from "node:path";

import { evaluatePolicies, type ResourceRecord } from "../../policies/harness";
import { policies } from "../../policies/pack";
import { exampleStackConfigs, recordStack } from "../../policies/stackRecords";
import { analyzeAll, analyzeResource, analyzerInfo, servePolicyPack, type ServedPack } from "./analyzer";
import { realStackVariants } from "./variants";

/**
 * The pack as the Pulumi CLI runs it: `policies/index.ts` served by `@pulumi/policy`'s own analyzer
 * server in a separate process, asked over gRPC what the engine asks during `pulumi preview`. Its
 * answers must match the offline engine that `npm run policy` uses, so the CI check and the
 * operator's preview cannot disagree.
 */

let pack: ServedPack;

beforeAll(async () => {
  pack = await servePolicyPack();
}, 60_000);

afterAll(() => pack?.stop());

/** Violations as `rule urn` lines, sorted, for comparing the two engines. */
function keys(items: { policyName: string; urn?: string }[]): string[] {
  return items.map((v) => `${v.policyName} ${v.urn ?? ""}`).sort();
}

it("declares every rule of the pack, all mandatory", async () => {
  const info = await analyzerInfo(pack.client);
  expect(info.map((p) => p.name).sort()).toEqual(policies.map((p) => p.name).sort());
  expect(new Set(info.map((p) => p.level))).toEqual(new Set(["mandatory"]));
});

it("says which rules do not apply to a resource, with the reason", async () => {
  const dashboard: ResourceRecord = {
    type: "aws:cloudwatch/dashboard:Dashboard",
    name: "d",
    urn: "urn:pulumi:test::p::aws:cloudwatch/dashboard:Dashboard::d",
    inputs: { dashboardName: "d", dashboardBody: "{}" },
  };
  const analysis = await analyzeResource(pack.client, dashboard);
  expect(analysis.diagnostics).toEqual([]);
  expect(analysis.notApplicable).toEqual(
    expect.arrayContaining([
      {
        policyName: "ec2-launch-template-imdsv2",
        reason: "Policy only applies to resources of type 'aws:ec2/launchTemplate:LaunchTemplate'",
      },
      {
        policyName: "required-tags",
        reason: "resources of type 'aws:cloudwatch/dashboard:Dashboard' take no tags",
      },
    ]),
  );
});

describe.each(exampleStackConfigs().map((s) => [path.basename(s), s]))("%s", (_name, stackFile) => {
  let records: ResourceRecord[];

  beforeAll(async () => {
    records = await recordStack(stackFile);
  }, 120_000);

  it("gets the same verdict from the served pack as from the offline engine", async () => {
    const served = await analyzeAll(pack.client, records);
    const offline = await evaluatePolicies(policies, records);
    expect(keys(served.diagnostics)).toEqual(keys(offline.violations));
  });

  it.each(realStackVariants)("agrees on the variant that breaks %s", async (rule, change) => {
    const variant = structuredClone(records);
    change(variant);
    const served = await analyzeAll(pack.client, variant);
    const offline = await evaluatePolicies(policies, variant);
    expect(served.diagnostics.map((d) => d.policyName)).toContain(rule);
    expect(keys(served.diagnostics)).toEqual(keys(offline.violations));
    // The served pack prefixes each message with the rule's description, as the CLI prints it.
    expect(served.diagnostics.map((d) => d.message).sort()).toEqual(
      offline.violations.map((v) => `${v.description}\n${v.message}`).sort(),
    );
  });
});
