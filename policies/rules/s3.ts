import * as aws from "@pulumi/aws";
import type { PolicyResource, StackValidationPolicy } from "@pulumi/policy";

import { isRecord, list, statementsOf, UnreadableDocument, type Statement } from "./documents";
import { configuring } from "./pairing";
import { type ResourceClass, validateEachOfType } from "./stack";

/**
 * Backup bucket rules. `@pulumi/aws` 7 configures a bucket through separate resources whose `bucket`
 * input names it, so each rule is a stack rule that pairs every `aws.s3.Bucket` with its configuration
 * resources (see `pairing.ts`) and reports against the bucket.
 */

/** The configuration resources of `resourceClass` that belong to `bucket`. */
function settingsOf(stack: PolicyResource[], bucket: PolicyResource, resourceClass: ResourceClass) {
  return configuring(stack, "bucket", bucket).filter((r) => r.isType(resourceClass));
}

/** AWS-managed S3 key: not a customer-managed key, so neither its policy nor its rotation is ours. */
const AWS_MANAGED_S3_KEY = "alias/aws/s3";
const KMS_ALGORITHMS = ["aws:kms", "aws:kms:dsse"];

/** Default SSE with a customer-managed KMS key. */
export const bucketEncryptedWithCmk: StackValidationPolicy = {
  name: "s3-bucket-encrypted-with-cmk",
  description: "Backup buckets encrypt by default with SSE-KMS under a customer-managed KMS key.",
  enforcementLevel: "mandatory",
  severity: "critical",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const configs = settingsOf(stack, bucket, aws.s3.BucketServerSideEncryptionConfiguration);
    if (configs.length === 0) {
      report(
        `Bucket '${bucket.name}' has no default encryption. Add an aws.s3.BucketServerSideEncryptionConfiguration ` +
          `with bucket: <bucket>.id and a rule applyServerSideEncryptionByDefault { sseAlgorithm: "aws:kms", ` +
          `kmsMasterKeyId: <customer-managed aws.kms.Key>.arn }.`,
      );
      return;
    }
    for (const config of configs) {
      const defaults = list(config.props.rules)
        .filter(isRecord)
        .map((rule) => rule.applyServerSideEncryptionByDefault)
        .filter(isRecord);
      if (defaults.length === 0) {
        report(
          `Encryption config '${config.name}' of bucket '${bucket.name}' has no applyServerSideEncryptionByDefault. ` +
            `Add one with sseAlgorithm "aws:kms" and kmsMasterKeyId set to a customer-managed key ARN.`,
        );
      }
      for (const sse of defaults) {
        const algorithm = String(sse.sseAlgorithm);
        const key = sse.kmsMasterKeyId;
        if (!KMS_ALGORITHMS.includes(algorithm)) {
          report(
            `Encryption config '${config.name}' of bucket '${bucket.name}' uses sseAlgorithm "${algorithm}". ` +
              `Set sseAlgorithm to "aws:kms" with kmsMasterKeyId of a customer-managed key.`,
          );
        } else if (typeof key !== "string" || key.length === 0 || key.endsWith(AWS_MANAGED_S3_KEY)) {
          report(
            `Encryption config '${config.name}' of bucket '${bucket.name}' does not name a customer-managed key ` +
              `(kmsMasterKeyId is ${JSON.stringify(key ?? null)}). Set kmsMasterKeyId to the ARN of an aws.kms.Key ` +
              `the stack manages (not ${AWS_MANAGED_S3_KEY}).`,
          );
        }
      }
    }
  }),
};

/** Versioning enabled. */
export const bucketVersioningEnabled: StackValidationPolicy = {
  name: "s3-bucket-versioning-enabled",
  description: "Backup buckets keep every version of every object (versioning Enabled).",
  enforcementLevel: "mandatory",
  severity: "high",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const configs = settingsOf(stack, bucket, aws.s3.BucketVersioning);
    const enabled = configs.some(
      (c) =>
        isRecord(c.props.versioningConfiguration) && c.props.versioningConfiguration.status === "Enabled",
    );
    if (!enabled) {
      const found = configs.map((c) =>
        isRecord(c.props.versioningConfiguration) ? c.props.versioningConfiguration.status : undefined,
      );
      report(
        `Bucket '${bucket.name}' does not have versioning enabled (found ${configs.length === 0 ? "no aws.s3.BucketVersioning" : `status ${JSON.stringify(found)}`}). ` +
          `Add an aws.s3.BucketVersioning with bucket: <bucket>.id and versioningConfiguration { status: "Enabled" }.`,
      );
    }
  }),
};

const LOCK_MODES = ["GOVERNANCE", "COMPLIANCE"];

/** Object lock enabled at creation and a default retention. */
export const bucketObjectLockRetention: StackValidationPolicy = {
  name: "s3-bucket-object-lock-retention",
  description:
    "Backup buckets are created with object lock and a default retention, so no backup can be deleted early.",
  enforcementLevel: "mandatory",
  severity: "high",
  configSchema: {
    properties: { minimumRetentionDays: { type: "integer", minimum: 1, default: 1 } },
  },
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report, args) => {
    const { minimumRetentionDays = 1 } = args.getConfig<{ minimumRetentionDays?: number }>();
    if (bucket.props.objectLockEnabled !== true) {
      report(
        `Bucket '${bucket.name}' is not created with object lock. Set objectLockEnabled: true on the aws.s3.Bucket ` +
          `(it can only be set at creation, so this replaces an existing bucket).`,
      );
    }
    const configs = settingsOf(stack, bucket, aws.s3.BucketObjectLockConfiguration);
    if (configs.length === 0) {
      report(
        `Bucket '${bucket.name}' has no default retention. Add an aws.s3.BucketObjectLockConfiguration with ` +
          `bucket: <bucket>.id and rule.defaultRetention { mode: "GOVERNANCE" or "COMPLIANCE", days: ≥ ${minimumRetentionDays} }.`,
      );
    }
    for (const config of configs) {
      const problem = retentionProblem(config, minimumRetentionDays);
      if (problem) report(`Object lock config '${config.name}' of bucket '${bucket.name}' ${problem}`);
    }
  }),
};

function retentionProblem(config: PolicyResource, minimumDays: number): string | undefined {
  const enabled = config.props.objectLockEnabled;
  if (enabled !== undefined && enabled !== "Enabled") {
    return `has objectLockEnabled ${JSON.stringify(enabled)}. Set it to "Enabled" or leave it out.`;
  }
  const retention = isRecord(config.props.rule) ? config.props.rule.defaultRetention : undefined;
  if (!isRecord(retention)) {
    return `has no rule.defaultRetention. Add rule.defaultRetention { mode: "GOVERNANCE", days: ${minimumDays} } or longer.`;
  }
  if (!LOCK_MODES.includes(String(retention.mode))) {
    return `has retention mode ${JSON.stringify(retention.mode ?? null)}. Set rule.defaultRetention.mode to "GOVERNANCE" or "COMPLIANCE".`;
  }
  const days = typeof retention.years === "number" ? retention.years * 365 : Number(retention.days ?? 0);
  if (!(days >= minimumDays)) {
    return `retains for ${days} days. Set rule.defaultRetention.days to at least ${minimumDays}.`;
  }
  return undefined;
}

const PUBLIC_ACCESS_SETTINGS = [
  "blockPublicAcls",
  "blockPublicPolicy",
  "ignorePublicAcls",
  "restrictPublicBuckets",
];

/** All four public access block settings on. */
export const bucketPublicAccessBlocked: StackValidationPolicy = {
  name: "s3-bucket-public-access-blocked",
  description: "Backup buckets block every form of public access (all four public access block settings).",
  enforcementLevel: "mandatory",
  severity: "critical",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const blocks = settingsOf(stack, bucket, aws.s3.BucketPublicAccessBlock);
    const complete = blocks.find((b) => PUBLIC_ACCESS_SETTINGS.every((s) => b.props[s] === true));
    if (complete) return;
    const missing =
      blocks.length === 0
        ? PUBLIC_ACCESS_SETTINGS
        : PUBLIC_ACCESS_SETTINGS.filter((s) => blocks[0].props[s] !== true);
    report(
      `Bucket '${bucket.name}' does not block public access fully (${blocks.length === 0 ? "no aws.s3.BucketPublicAccessBlock" : `not true: ${missing.join(", ")}`}). ` +
        `Add an aws.s3.BucketPublicAccessBlock with bucket: <bucket>.id and ${PUBLIC_ACCESS_SETTINGS.map((s) => `${s}: true`).join(", ")}.`,
    );
  }),
};

/** A bucket policy that denies every request not made over TLS. */
export const bucketPolicyDeniesInsecureTransport: StackValidationPolicy = {
  name: "s3-bucket-policy-denies-insecure-transport",
  description: "Backup buckets have a bucket policy that denies every request made without TLS.",
  enforcementLevel: "mandatory",
  severity: "high",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const policies = settingsOf(stack, bucket, aws.s3.BucketPolicy);
    const fix =
      `Add to its aws.s3.BucketPolicy the statement { Effect: "Deny", Principal: "*", Action: "s3:*", ` +
      `Resource: [<bucket>.arn, <bucket>.arn + "/*"], Condition: { Bool: { "aws:SecureTransport": "false" } } }.`;
    if (policies.length === 0) {
      report(`Bucket '${bucket.name}' has no bucket policy, so requests without TLS are not denied. ${fix}`);
      return;
    }
    for (const policy of policies) {
      let statements: Statement[];
      try {
        statements = statementsOf(policy.props.policy);
      } catch (error) {
        if (!(error instanceof UnreadableDocument)) throw error;
        report(
          `Bucket policy '${policy.name}' of bucket '${bucket.name}' cannot be read: ${error.message}. ${fix}`,
        );
        continue;
      }
      if (!statements.some(deniesInsecureTransport)) {
        report(
          `Bucket policy '${policy.name}' of bucket '${bucket.name}' does not deny requests without TLS. ${fix}`,
        );
      }
    }
  }),
};

/** Deny, to everyone, every S3 action on the bucket and its objects when aws:SecureTransport is false. */
function deniesInsecureTransport(statement: Statement): boolean {
  const everyone = statement.principals.includes("*");
  const everyAction = statement.actions.some((a) => a === "*" || a.toLowerCase() === "s3:*");
  const secureTransport = Object.entries(statement.condition)
    .filter(([operator]) => operator === "Bool")
    .flatMap(([, tests]) => list(tests["aws:SecureTransport"]))
    .some((value) => String(value) === "false");
  return (
    statement.effect === "Deny" &&
    everyone &&
    everyAction &&
    secureTransport &&
    coversBucketAndObjects(statement.resources)
  );
}

function coversBucketAndObjects(resources: string[]): boolean {
  if (resources.includes("*")) return true;
  return resources.some((r) => !r.endsWith("/*") && resources.includes(`${r}/*`));
}

/** Lifecycle that aborts incomplete multipart uploads and expires archives and their old versions. */
export const bucketLifecycleExpires: StackValidationPolicy = {
  name: "s3-bucket-lifecycle-expires",
  description:
    "Backup buckets have a lifecycle that aborts incomplete multipart uploads, expires archives and expires noncurrent versions.",
  enforcementLevel: "mandatory",
  severity: "medium",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const configs = settingsOf(stack, bucket, aws.s3.BucketLifecycleConfiguration);
    const rules = configs
      .flatMap((c) => list(c.props.rules))
      .filter(isRecord)
      .filter((rule) => rule.status === "Enabled");
    const missing = LIFECYCLE_NEEDS.filter((need) => !rules.some(need.met)).map((need) => need.rule);
    if (missing.length === 0) return;
    const needs = missing.join("; ");
    report(
      configs.length === 0
        ? `Bucket '${bucket.name}' has no lifecycle. Add an aws.s3.BucketLifecycleConfiguration with ` +
            `bucket: <bucket>.id and enabled rules for: ${needs}.`
        : `Bucket '${bucket.name}' lifecycle has no enabled rule for: ${needs}. Add them to its ` +
            `aws.s3.BucketLifecycleConfiguration (status: "Enabled").`,
    );
  }),
};

/** What the lifecycle must do, each with the rule that does it (for the message). */
const LIFECYCLE_NEEDS: { rule: string; met: (rule: Record<string, unknown>) => boolean }[] = [
  {
    rule: "abortIncompleteMultipartUpload { daysAfterInitiation: 1 }",
    met: (r) =>
      isRecord(r.abortIncompleteMultipartUpload) &&
      positive(r.abortIncompleteMultipartUpload.daysAfterInitiation),
  },
  {
    rule: "expiration { days: <retention days> }",
    met: (r) =>
      isRecord(r.expiration) && (positive(r.expiration.days) || typeof r.expiration.date === "string"),
  },
  {
    rule: "noncurrentVersionExpiration { noncurrentDays: <days> } (a versioned bucket otherwise keeps expired archives forever)",
    met: (r) =>
      isRecord(r.noncurrentVersionExpiration) && positive(r.noncurrentVersionExpiration.noncurrentDays),
  },
];

function positive(value: unknown): boolean {
  return typeof value === "number" && value > 0;
}

/** Every bucket rule, in the order they are reported. */
export const bucketRules = [
  bucketEncryptedWithCmk,
  bucketVersioningEnabled,
  bucketObjectLockRetention,
  bucketPublicAccessBlocked,
  bucketPolicyDeniesInsecureTransport,
  bucketLifecycleExpires,
];
