import * as aws from "@pulumi/aws";
import { type ResourceValidationPolicy, validateResourceOfType } from "@pulumi/policy";

/** The AWS-managed SNS key: CloudWatch cannot publish to a topic encrypted with it. */
const AWS_MANAGED_SNS_KEY = "alias/aws/sns";

/** Topics encrypted with a customer-managed key (whose policy can let CloudWatch publish). */
export const topicEncrypted: ResourceValidationPolicy = {
  name: "sns-topic-encrypted",
  description: "SNS topics are encrypted with a customer-managed KMS key.",
  enforcementLevel: "mandatory",
  severity: "medium",
  validateResource: validateResourceOfType(aws.sns.Topic, (topic, _args, report) => {
    const key = topic.kmsMasterKeyId;
    if (typeof key !== "string" || key.length === 0) {
      report(
        `The topic is not encrypted. Set kmsMasterKeyId to a customer-managed aws.kms.Key whose key policy allows ` +
          `cloudwatch.amazonaws.com kms:GenerateDataKey* and kms:Decrypt.`,
      );
    } else if (key.endsWith(AWS_MANAGED_SNS_KEY)) {
      report(
        `The topic uses the AWS-managed key ${AWS_MANAGED_SNS_KEY}, to which CloudWatch alarms cannot publish. Set ` +
          `kmsMasterKeyId to a customer-managed aws.kms.Key whose policy allows cloudwatch.amazonaws.com.`,
      );
    }
  }),
};

/** Every SNS rule. */
export const topicRules = [topicEncrypted];
