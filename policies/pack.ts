import type { Policies } from "@pulumi/policy";

import { alarmRules } from "./rules/cloudwatch";
import { launchTemplateRules } from "./rules/ec2";
import { pitrRules } from "./rules/pitr";
import { iamRules } from "./rules/iam";
import { bucketRules } from "./rules/s3";
import { topicRules } from "./rules/sns";
import { queueRules } from "./rules/sqs";
import { tagRules } from "./rules/tags";
import { writeOnceRules } from "./rules/writeOnce";

/** The pack's name, as `pulumi preview --policy-pack policies` reports it. */
export const POLICY_PACK_NAME = "mysql-backup-pipeline";

/**
 * Every rule of the pack. Each declares its own enforcement level (all mandatory); an operator
 * overrides a level or a rule's settings with a PolicyPack config file
 * (`pulumi preview --policy-pack policies --policy-pack-config FILE`, or `npm run policy -- --config FILE`).
 */
export const policies: Policies = [
  ...bucketRules,
  ...writeOnceRules,
  ...pitrRules,
  ...queueRules,
  ...launchTemplateRules,
  ...iamRules,
  ...alarmRules,
  ...topicRules,
  ...tagRules,
];
