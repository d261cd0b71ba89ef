import * as path from "node:path";

import { evaluatePolicies, type ResourceRecord } from "../../policies/harness";
import { policies } from "../../policies/pack";
import { exampleStackConfigs, recordStack } from "../../policies/stackRecords";
import { realStackVariants } from "./variants";

/**
 * The acceptance of the pack over the real stack program (index.ts) under the shared mocks: every
 * example stack config passes every rule, and for every rule a variant of the real records with one
 * input changed fails with that rule's violation and no other.
 */

const stacks = exampleStackConfigs();

it("finds the example stack configs", () => {
  expect(stacks.map((s) => path.basename(s))).toEqual(
    expect.arrayContaining(["Pulumi.dev.yaml", "Pulumi.prod.yaml"]),
  );
});

it("has a variant of the real stack for every rule", () => {
  expect(realStackVariants.map(([rule]) => rule).sort()).toEqual(policies.map((p) => p.name).sort());
});

describe.each(stacks.map((s) => [path.basename(s), s]))("%s", (_name, stackFile) => {
  let records: ResourceRecord[];

  beforeAll(async () => {
    records = await recordStack(stackFile);
  }, 120_000);

  it("passes every rule, and every rule applies", async () => {
    const report = await evaluatePolicies(policies, records);
    expect(report.violations).toEqual([]);
    expect(report.notApplicable).toEqual([]);
  });

  it.each(realStackVariants)("fails %s alone when one input breaks it", async (rule, change) => {
    const variant = structuredClone(records);
    change(variant);
    const report = await evaluatePolicies(policies, variant);
    expect(report.violations.length).toBeGreaterThan(0);
    expect([...new Set(report.violations.map((v) => v.policyName))]).toEqual([rule]);
  });

  it("reports the launch template rules not applicable to the stack without its verifier fleet", async () => {
    const report = await evaluatePolicies(
      policies,
      records.filter((r) => r.type !== "aws:ec2/launchTemplate:LaunchTemplate"),
    );
    expect(report.violations).toEqual([]);
    expect(report.notApplicable.map((n) => n.policyName).sort()).toEqual([
      "ec2-launch-template-encrypted-volumes",
      "ec2-launch-template-imdsv2",
      "ec2-launch-template-no-public-ip",
    ]);
  });
});
