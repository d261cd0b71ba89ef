import * as aws from "@pulumi/aws";
import type { StackValidationPolicy } from "@pulumi/policy";

import { actionMatches, list, statementsOf, UnreadableDocument, type Statement } from "./documents";
import { configuring } from "./pairing";
import { validateEachOfType } from "./stack";

/**
 * Backups are write-once: what a verdict proved must stay what it proved. A bucket policy keeps it so for
 * everyone, whatever their IAM policies grant, by denying a PutObject (which is also how
 * CompleteMultipartUpload is authorised) that carries no `If-None-Match` header.
 */
export const bucketPolicyWriteOnce: StackValidationPolicy = {
  name: "s3-bucket-policy-write-once",
  description:
    "Backup buckets have a bucket policy that denies, to everyone, writes that could replace an object (PutObject without If-None-Match).",
  enforcementLevel: "mandatory",
  severity: "critical",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const policies = configuring(stack, "bucket", bucket).filter((r) => r.isType(aws.s3.BucketPolicy));
    const fix =
      `Add to its aws.s3.BucketPolicy the statement { Effect: "Deny", Principal: "*", Action: "s3:PutObject", ` +
      `Resource: <bucket>.arn + "/<prefix>/*", Condition: { Null: { "s3:if-none-match": "true" }, ` +
      `BoolIfExists: { "s3:ObjectCreationOperation": "true" } } } (components/bucketPolicy.ts).`;
    // A bucket without any policy is reported once, by s3-bucket-policy-denies-insecure-transport.
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
      if (!statements.some(deniesUnconditionalWrites)) {
        report(
          `Bucket policy '${policy.name}' of bucket '${bucket.name}' lets a write replace an existing object. ${fix}`,
        );
      }
    }
  }),
};

/** Deny, to everyone, PutObject on objects of the bucket when the request has no If-None-Match header. */
function deniesUnconditionalWrites(statement: Statement): boolean {
  const headerAbsent = list(statement.condition.Null?.["s3:if-none-match"]).some((v) => String(v) === "true");
  return (
    statement.effect === "Deny" &&
    statement.principals.includes("*") &&
    statement.actions.some((a) => actionMatches(a, "s3:PutObject")) &&
    statement.resources.some((r) => r.includes("/")) &&
    headerAbsent
  );
}

/** Every write-once rule. */
export const writeOnceRules = [bucketPolicyWriteOnce];
