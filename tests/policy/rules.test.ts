import type { PolicyResource } from "@pulumi/policy";

import { evaluatePolicies, hasMandatoryViolations, type ResourceRecord } from "../../policies/harness";
import { policies } from "../../policies/pack";
import { formatReport } from "../../policies/report";
import { actionMatches, statementsOf } from "../../policies/rules/documents";
import { BACKUP_TAMPERING_ACTIONS } from "../../policies/rules/iam";
import { refersTo } from "../../policies/rules/pairing";
import { isTaggable } from "../../policies/rules/tags";
import { compliantStack, inputsOf } from "./fixtures";

/**
 * Every rule against a hand-written compliant stack shaped like `@pulumi/aws` 7.48 registrations:
 * the stack passes, and each variant below (one input changed) fails with exactly one rule.
 */

const T = {
  bucket: "aws:s3/bucket:Bucket",
  sse: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  versioning: "aws:s3/bucketVersioning:BucketVersioning",
  lock: "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
  pab: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  bucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
  lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  queue: "aws:sqs/queue:Queue",
  template: "aws:ec2/launchTemplate:LaunchTemplate",
  rolePolicy: "aws:iam/rolePolicy:RolePolicy",
  role: "aws:iam/role:Role",
  alarm: "aws:cloudwatch/metricAlarm:MetricAlarm",
  topic: "aws:sns/topic:Topic",
  group: "aws:autoscaling/group:Group",
};

type Change = (records: ResourceRecord[]) => void;

function policyOf(records: ResourceRecord[]): Record<string, unknown> {
  const inputs = inputsOf(records, T.rolePolicy);
  return JSON.parse(inputs.policy as string) as Record<string, unknown>;
}

function appendStatement(records: ResourceRecord[], statement: Record<string, unknown>): void {
  const document = policyOf(records);
  (document.Statement as unknown[]).push(statement);
  inputsOf(records, T.rolePolicy).policy = JSON.stringify(document);
}

/** For every rule, changes that break exactly that rule. */
const variants: [rule: string, what: string, change: Change][] = [
  [
    "s3-bucket-encrypted-with-cmk",
    "SSE-S3 instead of SSE-KMS",
    (r) => {
      (
        inputsOf(r, T.sse).rules as Record<string, Record<string, unknown>>[]
      )[0].applyServerSideEncryptionByDefault.sseAlgorithm = "AES256";
    },
  ],
  [
    "s3-bucket-encrypted-with-cmk",
    "the AWS-managed key",
    (r) => {
      (
        inputsOf(r, T.sse).rules as Record<string, Record<string, unknown>>[]
      )[0].applyServerSideEncryptionByDefault.kmsMasterKeyId = "alias/aws/s3";
    },
  ],
  [
    "s3-bucket-encrypted-with-cmk",
    "no SSE configuration resource",
    (r) => {
      r.splice(
        r.findIndex((x) => x.type === T.sse),
        1,
      );
    },
  ],
  [
    "s3-bucket-encrypted-with-cmk",
    "SSE configuration of another bucket",
    (r) => {
      inputsOf(r, T.sse).bucket = "some-other-bucket";
    },
  ],
  [
    "s3-bucket-versioning-enabled",
    "versioning suspended",
    (r) => {
      inputsOf(r, T.versioning).versioningConfiguration = { status: "Suspended" };
    },
  ],
  [
    "s3-bucket-object-lock-retention",
    "bucket without object lock",
    (r) => {
      inputsOf(r, T.bucket).objectLockEnabled = false;
    },
  ],
  [
    "s3-bucket-object-lock-retention",
    "no default retention",
    (r) => {
      delete inputsOf(r, T.lock).rule;
    },
  ],
  [
    "s3-bucket-public-access-blocked",
    "restrictPublicBuckets false",
    (r) => {
      inputsOf(r, T.pab).restrictPublicBuckets = false;
    },
  ],
  [
    "s3-bucket-policy-denies-insecure-transport",
    "TLS deny only on objects",
    (r) => {
      const inputs = inputsOf(r, T.bucketPolicy);
      const document = JSON.parse(inputs.policy as string) as { Statement: Record<string, unknown>[] };
      document.Statement[0].Resource = (document.Statement[0].Resource as string[])[1];
      inputs.policy = JSON.stringify(document);
    },
  ],
  [
    "s3-bucket-policy-write-once",
    "no deny of writes without If-None-Match",
    (r) => {
      const inputs = inputsOf(r, T.bucketPolicy);
      const document = JSON.parse(inputs.policy as string) as { Statement: Record<string, unknown>[] };
      document.Statement = document.Statement.filter((s) => s.Sid !== "DenyOverwritingBackups");
      inputs.policy = JSON.stringify(document);
    },
  ],
  [
    "s3-bucket-policy-write-once",
    "the deny only applies when the header is present (a condition that never matches a plain write)",
    (r) => {
      const inputs = inputsOf(r, T.bucketPolicy);
      const document = JSON.parse(inputs.policy as string) as { Statement: Record<string, unknown>[] };
      document.Statement[1].Condition = { Null: { "s3:if-none-match": "false" } };
      inputs.policy = JSON.stringify(document);
    },
  ],
  [
    "s3-bucket-policy-denies-insecure-transport",
    "no bucket policy",
    (r) => {
      r.splice(
        r.findIndex((x) => x.type === T.bucketPolicy),
        1,
      );
    },
  ],
  [
    "s3-bucket-lifecycle-expires",
    "no abort of incomplete multipart uploads",
    (r) => {
      (inputsOf(r, T.lifecycle).rules as Record<string, unknown>[])[0].status = "Disabled";
    },
  ],
  [
    "s3-bucket-lifecycle-expires",
    "archives never expire",
    (r) => {
      delete (inputsOf(r, T.lifecycle).rules as Record<string, unknown>[])[1].expiration;
    },
  ],
  [
    "s3-binlog-retention-covers-snapshots",
    "the binlog archive expires before the snapshots",
    (r) => {
      (inputsOf(r, T.lifecycle).rules as Record<string, unknown>[]).push({
        id: "binlogs",
        status: "Enabled",
        filter: { prefix: "backups/orders/binlogs/" },
        expiration: { days: 30 },
      });
    },
  ],
  [
    "s3-binlog-retention-covers-snapshots",
    "a catch-all shorter than the tagged monthlies",
    (r) => {
      (inputsOf(r, T.lifecycle).rules as Record<string, unknown>[]).push({
        id: "monthly",
        status: "Enabled",
        filter: { and: { prefix: "backups/", tags: { retention: "monthly" } } },
        expiration: { days: 400 },
      });
    },
  ],
  [
    "sqs-queue-encrypted",
    "DLQ without encryption",
    (r) => {
      delete inputsOf(r, T.queue, "verify-dlq").kmsMasterKeyId;
    },
  ],
  [
    "sqs-queue-has-dlq",
    "queue without redrive policy",
    (r) => {
      delete inputsOf(r, T.queue, "verify").redrivePolicy;
    },
  ],
  [
    "sqs-queue-has-dlq",
    "redrive policy without maxReceiveCount",
    (r) => {
      inputsOf(r, T.queue, "verify").redrivePolicy = JSON.stringify({
        deadLetterTargetArn: "arn:aws:sqs:eu-west-1:123456789012:verify-dlq",
      });
    },
  ],
  [
    "ec2-launch-template-imdsv2",
    "IMDSv1 allowed",
    (r) => {
      (inputsOf(r, T.template).metadataOptions as Record<string, unknown>).httpTokens = "optional";
    },
  ],
  [
    "ec2-launch-template-imdsv2",
    "hop limit 2",
    (r) => {
      (inputsOf(r, T.template).metadataOptions as Record<string, unknown>).httpPutResponseHopLimit = 2;
    },
  ],
  [
    "ec2-launch-template-encrypted-volumes",
    "unencrypted scratch volume",
    (r) => {
      (
        inputsOf(r, T.template).blockDeviceMappings as Record<string, Record<string, unknown>>[]
      )[0].ebs.encrypted = "false";
    },
  ],
  [
    "ec2-launch-template-no-public-ip",
    "public IP",
    (r) => {
      (inputsOf(r, T.template).networkInterfaces as Record<string, unknown>[])[0].associatePublicIpAddress =
        "true";
    },
  ],
  [
    "ec2-launch-template-no-public-ip",
    "no network interface declared",
    (r) => {
      delete inputsOf(r, T.template).networkInterfaces;
    },
  ],
  [
    "iam-no-star-on-star",
    "NotAction on every resource",
    (r) => {
      appendStatement(r, {
        Effect: "Allow",
        NotAction: BACKUP_TAMPERING_ACTIONS,
        Resource: "*",
      });
    },
  ],
  [
    "iam-host-role-cannot-tamper-with-backups",
    "s3:Delete* on the backups",
    (r) => {
      appendStatement(r, { Effect: "Allow", Action: "s3:Delete*", Resource: "arn:aws:s3:::backups-4f2a/*" });
    },
  ],
  [
    "iam-host-role-cannot-tamper-with-backups",
    "s3:PutBucketPolicy on the bucket",
    (r) => {
      appendStatement(r, {
        Effect: "Allow",
        Action: ["s3:PutBucketPolicy"],
        Resource: "arn:aws:s3:::backups-4f2a",
      });
    },
  ],
  [
    "cloudwatch-alarm-has-action",
    "no alarm action",
    (r) => {
      inputsOf(r, T.alarm).alarmActions = [];
    },
  ],
  [
    "cloudwatch-alarm-has-action",
    "actions disabled",
    (r) => {
      inputsOf(r, T.alarm).actionsEnabled = false;
    },
  ],
  [
    "sns-topic-encrypted",
    "unencrypted topic",
    (r) => {
      delete inputsOf(r, T.topic).kmsMasterKeyId;
    },
  ],
  [
    "sns-topic-encrypted",
    "AWS-managed key",
    (r) => {
      inputsOf(r, T.topic).kmsMasterKeyId = "alias/aws/sns";
    },
  ],
  [
    "required-tags",
    "bucket missing a tag",
    (r) => {
      delete (inputsOf(r, T.bucket).tags as Record<string, string>)["mysql-backup-pipeline:environment"];
    },
  ],
  [
    "required-tags",
    "Auto Scaling group without tags",
    (r) => {
      inputsOf(r, T.group).tags = [];
    },
  ],
];

describe("the compliant stack", () => {
  it("passes every rule, and every rule applies to it", async () => {
    const report = await evaluatePolicies(policies, compliantStack());
    expect(report.violations).toEqual([]);
    expect(report.notApplicable).toEqual([]);
    expect(report.applied.sort()).toEqual(policies.map((p) => p.name).sort());
  });
});

describe("a variant that breaks one rule fails that rule alone", () => {
  it("covers every rule of the pack", () => {
    expect([...new Set(variants.map(([rule]) => rule))].sort()).toEqual(policies.map((p) => p.name).sort());
  });

  it.each(variants)("%s: %s", async (rule, _what, change) => {
    const records = compliantStack();
    change(records);
    const report = await evaluatePolicies(policies, records);
    expect(report.violations.map((v) => v.policyName)).toEqual([rule]);
    const [violation] = report.violations;
    expect(violation.enforcementLevel).toBe("mandatory");
    expect(violation.urn).toMatch(/^urn:pulumi:test::/);
    // Each message tells what to change.
    expect(violation.message).toMatch(/\b(Set|Add|Remove|Pass|List|Detach)\b/);
    expect(hasMandatoryViolations(report)).toBe(true);
  });
});

describe("violations name the resource in fault", () => {
  it("blames the bucket, not its configuration resource, for bucket rules", async () => {
    const records = compliantStack();
    inputsOf(records, T.versioning).versioningConfiguration = { status: "Suspended" };
    const report = await evaluatePolicies(policies, records);
    expect(report.violations[0].urn).toBe(records.find((r) => r.type === T.bucket)?.urn);
    expect(report.violations[0].message).toContain('status ["Suspended"]');
  });

  it("blames the role for a host-role grant and names the policy that grants it", async () => {
    const records = compliantStack();
    appendStatement(records, { Effect: "Allow", Action: "s3:*", Resource: "*" });
    const report = await evaluatePolicies(policies, records);
    const host = report.violations.find((v) => v.policyName === "iam-host-role-cannot-tamper-with-backups");
    expect(host?.urn).toBe(records.find((r) => r.type === T.role)?.urn);
    expect(host?.message).toContain(
      "s3:DeleteObjectVersion, s3:PutBucketObjectLockConfiguration, s3:PutBucketPolicy, s3:BypassGovernanceRetention",
    );
    expect(host?.message).toContain("aws.iam.RolePolicy 'verifier-permissions'");
  });

  it("does not treat a role that EC2 cannot assume as a host role", async () => {
    const records = compliantStack();
    inputsOf(records, T.role).assumeRolePolicy = JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Principal: { Service: "s3.amazonaws.com" }, Action: "sts:AssumeRole" }],
    });
    records.splice(
      records.findIndex((r) => r.type === "aws:iam/instanceProfile:InstanceProfile"),
      1,
    );
    appendStatement(records, {
      Effect: "Allow",
      Action: "s3:DeleteObjectVersion",
      Resource: "arn:aws:s3:::backups-4f2a/*",
    });
    const report = await evaluatePolicies(policies, records);
    expect(report.violations).toEqual([]);
  });
});

describe("rules that do not apply say so", () => {
  it("reports every rule not applicable, with its reason, for a stack of none of their types", async () => {
    const records = compliantStack().filter(
      (r) => r.type === "pulumi:pulumi:Stack" || r.type === "aws:cloudwatch/dashboard:Dashboard",
    );
    const report = await evaluatePolicies(policies, records);
    expect(report.violations).toEqual([]);
    expect(report.applied).toEqual([]);
    const reasons = Object.fromEntries(report.notApplicable.map((n) => [n.policyName, n.reasons.join("; ")]));
    expect(Object.keys(reasons).sort()).toEqual(policies.map((p) => p.name).sort());
    expect(reasons["s3-bucket-versioning-enabled"]).toBe(
      "the stack has no resources of type 'aws:s3/bucket:Bucket'",
    );
    expect(reasons["ec2-launch-template-imdsv2"]).toBe(
      "Policy only applies to resources of type 'aws:ec2/launchTemplate:LaunchTemplate'",
    );
    expect(reasons["required-tags"]).toContain(
      "resources of type 'aws:cloudwatch/dashboard:Dashboard' take no tags",
    );
  });

  it("lists the rule as not applicable in the printed report", async () => {
    const records = compliantStack().filter((r) => r.type !== T.template);
    const report = await evaluatePolicies(policies, records);
    const text = formatReport(
      { stack: "fixture", packName: "mysql-backup-pipeline", packVersion: "0.1.0" },
      report,
    );
    expect(text).toContain(
      "[not applicable]  ec2-launch-template-no-public-ip: Policy only applies to resources of type 'aws:ec2/launchTemplate:LaunchTemplate'",
    );
  });
});

describe("enforcement levels and settings come from the PolicyPack config", () => {
  const publicIp: Change = (r) => {
    (inputsOf(r, T.template).networkInterfaces as Record<string, unknown>[])[0].associatePublicIpAddress =
      "true";
  };

  it("reports at the configured level, which then does not block", async () => {
    const records = compliantStack();
    publicIp(records);
    const report = await evaluatePolicies(policies, records, {
      config: { "ec2-launch-template-no-public-ip": "advisory" },
    });
    expect(report.violations.map((v) => [v.policyName, v.enforcementLevel])).toEqual([
      ["ec2-launch-template-no-public-ip", "advisory"],
    ]);
    expect(hasMandatoryViolations(report)).toBe(false);
  });

  it("skips a disabled rule and lists it as disabled", async () => {
    const records = compliantStack();
    publicIp(records);
    const config = { "ec2-launch-template-no-public-ip": { enforcementLevel: "disabled" as const } };
    const report = await evaluatePolicies(policies, records, { config });
    expect(report.violations).toEqual([]);
    expect(report.disabled).toEqual(["ec2-launch-template-no-public-ip"]);
  });

  it("passes rule settings to the rule (a higher IMDS hop limit allowed)", async () => {
    const records = compliantStack();
    (inputsOf(records, T.template).metadataOptions as Record<string, unknown>).httpPutResponseHopLimit = 2;
    const strict = await evaluatePolicies(policies, records);
    const relaxed = await evaluatePolicies(policies, records, {
      config: { "ec2-launch-template-imdsv2": { maximumHopLimit: 2 } },
    });
    expect(strict.violations.map((v) => v.policyName)).toEqual(["ec2-launch-template-imdsv2"]);
    expect(relaxed.violations).toEqual([]);
  });

  it("requires the configured tag keys", async () => {
    const config = { "required-tags": { requiredTags: ["team"] } };
    const report = await evaluatePolicies(policies, compliantStack(), { config });
    expect(report.violations.length).toBeGreaterThan(0);
    expect(new Set(report.violations.map((v) => v.message))).toEqual(
      new Set([expect.stringContaining("Missing tags: team.")]),
    );
  });
});

describe("the printed report", () => {
  it("prints level, rule, resource, URN, description and message like pulumi preview", async () => {
    const records = compliantStack();
    inputsOf(records, T.alarm).alarmActions = [];
    const report = await evaluatePolicies(policies, records);
    const text = formatReport(
      { stack: "Pulumi.fixture.yaml", packName: "mysql-backup-pipeline", packVersion: "0.1.0" },
      report,
    );
    const alarm = records.find((r) => r.type === T.alarm);
    expect(text.split("\n")).toEqual(
      expect.arrayContaining([
        "    ❌ mysql-backup-pipeline v0.1.0 (local: policies)",
        "        - [mandatory]  cloudwatch-alarm-has-action  (verification-failed: aws:cloudwatch/metricAlarm:MetricAlarm)",
        `          ${alarm?.urn}`,
        expect.stringContaining("Set alarmActions to [<alerting SNS topic>.arn]"),
      ]),
    );
  });
});

describe("reading policy documents", () => {
  it.each([
    ["s3:*", "s3:DeleteObjectVersion", true],
    ["S3:delete*", "s3:DeleteObjectVersion", true],
    ["s3:PutBucket*", "s3:PutBucketPolicy", true],
    ["s3:PutObject", "s3:PutObjectRetention", false],
    ["s3:Get?bject", "s3:GetObject", true],
    ["*", "kms:Decrypt", true],
    ["sqs:*", "s3:PutBucketPolicy", false],
  ])("%s matches %s: %s", (pattern, action, expected) => {
    expect(actionMatches(pattern, action)).toBe(expected);
  });

  it("accepts documents as objects and single values as lists", () => {
    const [statement] = statementsOf({
      Version: "2012-10-17",
      Statement: { Effect: "Deny", Principal: { AWS: "*" }, Action: "s3:*", Resource: "*" },
    });
    expect(statement).toMatchObject({
      effect: "Deny",
      principals: ["*"],
      actions: ["s3:*"],
      resources: ["*"],
    });
  });

  it("reports an unreadable document as a violation instead of passing it", async () => {
    const records = compliantStack();
    inputsOf(records, T.rolePolicy).policy = "{not json";
    const report = await evaluatePolicies(policies, records);
    expect(new Set(report.violations.map((v) => v.policyName))).toEqual(
      new Set(["iam-no-star-on-star", "iam-host-role-cannot-tamper-with-backups"]),
    );
    expect(report.violations[0].message).toContain("cannot be read: the policy document is not valid JSON");
  });
});

describe("which resources are taggable", () => {
  it.each([
    ["aws:s3/bucket:Bucket", true],
    ["aws:sqs/queue:Queue", true],
    ["aws:autoscaling/group:Group", true],
    ["aws:s3/bucketVersioning:BucketVersioning", false],
    ["aws:iam/rolePolicy:RolePolicy", false],
    ["aws:cloudwatch/dashboard:Dashboard", false],
    ["mysql-backup-pipeline:index:BackupBucket", false],
  ])("%s: %s", (type, taggable) => {
    expect(isTaggable(type, {})).toBe(taggable);
  });

  it("counts the provider's default tags", async () => {
    const records = compliantStack();
    const providerUrn = "urn:pulumi:test::mysql-backup-pipeline::pulumi:providers:aws::default-tags";
    const tags = inputsOf(records, T.topic).tags;
    records.push({
      type: "pulumi:providers:aws",
      name: "default-tags",
      urn: providerUrn,
      inputs: { defaultTags: { tags } },
    });
    const topic = records.find((r) => r.type === T.topic) as ResourceRecord;
    delete topic.inputs.tags;
    topic.provider = `${providerUrn}::provider-id`;
    expect((await evaluatePolicies(policies, records)).violations).toEqual([]);
    topic.provider = undefined;
    expect((await evaluatePolicies(policies, records)).violations.map((v) => v.policyName)).toEqual([
      "required-tags",
    ]);
  });
});

describe("pairing a configuration resource with its target", () => {
  const resource = (
    urn: string,
    props: Record<string, unknown>,
    deps: Record<string, PolicyResource[]> = {},
  ): PolicyResource => ({
    type: "t",
    name: urn,
    urn,
    props,
    opts: {
      protect: false,
      ignoreChanges: [],
      aliases: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
      additionalSecretOutputs: [],
    },
    dependencies: [],
    propertyDependencies: deps,
    isType: () => false,
    asType: () => undefined,
  });
  const bucket = resource("urn:bucket", {
    bucket: "backups-1",
    id: "backups-1",
    arn: "arn:aws:s3:::backups-1",
  });
  const other = resource("urn:other", { bucket: "other-1" });

  it("pairs by value: the bucket's name, id or ARN", () => {
    expect(refersTo(resource("urn:c1", { bucket: "backups-1" }), "bucket", bucket)).toBe(true);
    expect(refersTo(resource("urn:c2", { bucket: "arn:aws:s3:::backups-1" }), "bucket", bucket)).toBe(true);
    expect(refersTo(resource("urn:c3", { bucket: "other-1" }), "bucket", bucket)).toBe(false);
  });

  it("lets the engine's property dependencies decide when it provides them", () => {
    // During a preview the value may be unknown; the dependency still pairs it, and only with its target.
    const config = resource("urn:c4", { bucket: "backups-1" }, { bucket: [other] });
    expect(refersTo(config, "bucket", other)).toBe(true);
    expect(refersTo(config, "bucket", bucket)).toBe(false);
  });
});
