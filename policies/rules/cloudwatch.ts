import * as aws from "@pulumi/aws";
import { type ResourceValidationPolicy, validateResourceOfType } from "@pulumi/policy";

import { list } from "./documents";

/** An alarm nobody hears is no alarm: every alarm notifies someone when it fires. */
export const alarmHasAction: ResourceValidationPolicy = {
  name: "cloudwatch-alarm-has-action",
  description:
    "Every CloudWatch alarm has actions enabled and at least one alarm action (e.g. the SNS topic that pages).",
  enforcementLevel: "mandatory",
  severity: "high",
  validateResource: validateResourceOfType(aws.cloudwatch.MetricAlarm, (alarm, _args, report) => {
    const actions = list(alarm.alarmActions).filter((a) => typeof a === "string" && a.length > 0);
    if (actions.length === 0) {
      report(
        `The alarm notifies nobody. Set alarmActions to [<alerting SNS topic>.arn] on the aws.cloudwatch.MetricAlarm.`,
      );
    }
    if (alarm.actionsEnabled === false) {
      report(`The alarm's actions are disabled. Remove actionsEnabled: false (it defaults to true).`);
    }
  }),
};

/** Every CloudWatch rule. */
export const alarmRules = [alarmHasAction];
