import * as aws from "@pulumi/aws";
import {
  type PolicyResource,
  type ResourceValidationPolicy,
  type StackValidationPolicy,
  validateResourceOfType,
} from "@pulumi/policy";

import { isRecord } from "./documents";
import { configuring, identitiesOf } from "./pairing";
import { validateEachOfType } from "./stack";

/** Messages at rest encrypted, with a KMS key or SQS-managed SSE. */
export const queueEncrypted: ResourceValidationPolicy = {
  name: "sqs-queue-encrypted",
  description: "SQS queues encrypt messages at rest (SSE-KMS or SQS-managed SSE).",
  enforcementLevel: "mandatory",
  severity: "high",
  validateResource: validateResourceOfType(aws.sqs.Queue, (queue, _args, report) => {
    const kms = typeof queue.kmsMasterKeyId === "string" && queue.kmsMasterKeyId.length > 0;
    if (!kms && queue.sqsManagedSseEnabled !== true) {
      report(
        `The queue is not encrypted at rest. Set kmsMasterKeyId to a KMS key (alias or ARN) or set ` +
          `sqsManagedSseEnabled: true on the aws.sqs.Queue.`,
      );
    }
  }),
};

/**
 * Every queue has a dead-letter queue, unless it is one: a queue that another queue's redrive policy
 * targets, or that has a redrive-allow policy (inline or as an `aws.sqs.RedriveAllowPolicy`).
 */
export const queueHasDeadLetterQueue: StackValidationPolicy = {
  name: "sqs-queue-has-dlq",
  description:
    "SQS queues move poison messages to a dead-letter queue (redrive policy with maxReceiveCount).",
  enforcementLevel: "mandatory",
  severity: "high",
  validateStack: validateEachOfType(aws.sqs.Queue, (queue, stack, report) => {
    const redrives = [queue.props.redrivePolicy, ...redrivePolicyResources(stack, queue)];
    const problems = redrives.map(redriveProblem);
    if (problems.some((p) => p === undefined) || isDeadLetterQueue(queue, stack)) return;
    const found = problems.filter((p): p is string => p !== "missing");
    report(
      `The queue has no usable dead-letter queue${found.length > 0 ? ` (${found.join("; ")})` : ""}. Set redrivePolicy ` +
        `to JSON { "deadLetterTargetArn": <DLQ arn>, "maxReceiveCount": 3 } on the aws.sqs.Queue, or give the DLQ ` +
        `a redriveAllowPolicy if this queue is itself a dead-letter queue.`,
    );
  }),
};

function redrivePolicyResources(stack: PolicyResource[], queue: PolicyResource): unknown[] {
  return configuring(stack, "queueUrl", queue)
    .filter((r) => r.isType(aws.sqs.RedrivePolicy))
    .map((r) => r.props.redrivePolicy);
}

/** `undefined` when the redrive policy is usable, "missing" when absent, else what is wrong with it. */
function redriveProblem(policy: unknown): string | undefined {
  if (policy === undefined || policy === null || policy === "") return "missing";
  const parsed = parse(policy);
  if (!isRecord(parsed)) return "redrivePolicy is not a JSON object";
  if (typeof parsed.deadLetterTargetArn !== "string" || parsed.deadLetterTargetArn.length === 0) {
    return "redrivePolicy has no deadLetterTargetArn";
  }
  const count = Number(parsed.maxReceiveCount);
  if (!(Number.isInteger(count) && count >= 1)) return "redrivePolicy has no maxReceiveCount ≥ 1";
  return undefined;
}

function isDeadLetterQueue(queue: PolicyResource, stack: PolicyResource[]): boolean {
  if (hasValue(queue.props.redriveAllowPolicy)) return true;
  if (configuring(stack, "queueUrl", queue).some((r) => r.isType(aws.sqs.RedriveAllowPolicy))) return true;
  const identities = identitiesOf(queue);
  return stack
    .filter((r) => r.isType(aws.sqs.Queue) && r.urn !== queue.urn)
    .map((r) => parse(r.props.redrivePolicy))
    .some((p) => isRecord(p) && identities.has(String(p.deadLetterTargetArn)));
}

function hasValue(value: unknown): boolean {
  return value !== undefined && value !== null && value !== "";
}

function parse(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

/** Every queue rule. */
export const queueRules = [queueEncrypted, queueHasDeadLetterQueue];
