import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** What the Auto Scaling group is built from. */
export interface GroupInput {
  template: aws.ec2.LaunchTemplate;
  subnetIds: pulumi.Input<string>[];
  maxInstances: number;
  /** In order of preference; with Spot, several let EC2 find spare capacity. */
  instanceTypes: string[];
  spot: boolean;
  tags: Record<string, string>;
}

/**
 * The group metrics the scale-out alarm counts the fleet with (free at one-minute granularity).
 * Pending instances count: an instance that is still booting already covers its message.
 */
export const FLEET_METRICS = ["GroupInServiceInstances", "GroupPendingInstances"] as const;

/**
 * From 0 to `maxInstances` in the private subnets, launched from any of the instance types (on demand,
 * or Spot at the lowest price among the pools with capacity); a new template version rolls every instance.
 */
export function autoScalingGroup(
  parent: pulumi.Resource,
  name: string,
  g: GroupInput,
): aws.autoscaling.Group {
  return new aws.autoscaling.Group(
    `${name}-group`,
    {
      minSize: 0,
      maxSize: g.maxInstances,
      vpcZoneIdentifiers: g.subnetIds,
      mixedInstancesPolicy: {
        launchTemplate: {
          launchTemplateSpecification: {
            launchTemplateId: g.template.id,
            version: g.template.latestVersion.apply(String),
          },
          overrides: g.instanceTypes.map((instanceType) => ({ instanceType })),
        },
        instancesDistribution: {
          onDemandBaseCapacity: 0,
          onDemandPercentageAboveBaseCapacity: g.spot ? 0 : 100,
          onDemandAllocationStrategy: "prioritized",
          spotAllocationStrategy: "price-capacity-optimized",
        },
      },
      healthCheckType: "EC2",
      healthCheckGracePeriod: 600,
      instanceRefresh: { strategy: "Rolling", preferences: { minHealthyPercentage: 0 } },
      enabledMetrics: [...FLEET_METRICS],
      metricsGranularity: "1Minute",
      tags: Object.entries(g.tags).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
    },
    { parent },
  );
}

/**
 * Instances added per step of the shortfall (messages waiting or in flight, less the instances running or
 * booting), relative to the alarm's threshold of 1: one message short adds one instance, two or three add
 * two, four or more add four (capped by the group's maximum).
 */
export const SCALE_OUT_STEPS = [
  { metricIntervalLowerBound: "0", metricIntervalUpperBound: "1", scalingAdjustment: 1 },
  { metricIntervalLowerBound: "1", metricIntervalUpperBound: "3", scalingAdjustment: 2 },
  { metricIntervalLowerBound: "3", scalingAdjustment: 4 },
];

const sqsMetric = (
  id: string,
  metricName: string,
  queueName: pulumi.Input<string>,
): aws.types.input.cloudwatch.MetricAlarmMetricQuery => ({
  id,
  returnData: false,
  metric: {
    namespace: "AWS/SQS",
    metricName,
    dimensions: { QueueName: queueName },
    period: 60,
    stat: "Maximum",
  },
});

const groupMetric = (
  id: string,
  metricName: string,
  group: aws.autoscaling.Group,
): aws.types.input.cloudwatch.MetricAlarmMetricQuery => ({
  id,
  returnData: false,
  metric: {
    namespace: "AWS/AutoScaling",
    metricName,
    dimensions: { AutoScalingGroupName: group.name },
    period: 60,
    stat: "Maximum",
  },
});

/**
 * Grows the fleet by step while there are more messages (waiting or in flight) than instances running or
 * booting, so one message never starts two instances: the instance started for it counts from the moment
 * it is pending, and a new step waits out `warmupSeconds` (the metrics' lag) before it adds more.
 */
export function scaleOutOnBacklog(
  parent: pulumi.Resource,
  name: string,
  s: { group: aws.autoscaling.Group; queueName: pulumi.Input<string>; warmupSeconds: number },
  tags: Record<string, string>,
): void {
  const scaleOut = new aws.autoscaling.Policy(
    `${name}-scale-out`,
    {
      autoscalingGroupName: s.group.name,
      policyType: "StepScaling",
      adjustmentType: "ChangeInCapacity",
      metricAggregationType: "Maximum",
      estimatedInstanceWarmup: s.warmupSeconds,
      stepAdjustments: SCALE_OUT_STEPS,
    },
    { parent },
  );
  new aws.cloudwatch.MetricAlarm(
    `${name}-backlog-exceeds-fleet`,
    {
      alarmDescription: "More backups wait or run than verifier instances exist: grow the verifier fleet",
      metricQueries: [
        sqsMetric("visible", "ApproximateNumberOfMessagesVisible", s.queueName),
        sqsMetric("inflight", "ApproximateNumberOfMessagesNotVisible", s.queueName),
        groupMetric("inservice", "GroupInServiceInstances", s.group),
        groupMetric("pending", "GroupPendingInstances", s.group),
        {
          id: "shortfall",
          expression: "FILL(visible, 0) + FILL(inflight, 0) - FILL(inservice, 0) - FILL(pending, 0)",
          label: "Messages without an instance",
          returnData: true,
        },
      ],
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
      treatMissingData: "notBreaching",
      alarmActions: [scaleOut.arn],
      tags,
    },
    { parent },
  );
}

/** Back to zero instances after `idleMinutes` with no message waiting or in flight. */
export function scaleToZeroWhenIdle(
  parent: pulumi.Resource,
  name: string,
  s: { group: aws.autoscaling.Group; queueName: pulumi.Input<string>; idleMinutes: number },
  tags: Record<string, string>,
): void {
  const scaleIn = new aws.autoscaling.Policy(
    `${name}-scale-to-zero`,
    {
      autoscalingGroupName: s.group.name,
      policyType: "SimpleScaling",
      adjustmentType: "ExactCapacity",
      scalingAdjustment: 0,
      cooldown: 300,
    },
    { parent },
  );
  new aws.cloudwatch.MetricAlarm(
    `${name}-queue-idle`,
    {
      alarmDescription: `No message waiting or in flight for ${s.idleMinutes} minutes: scale the verifier fleet to zero`,
      metricQueries: [
        sqsMetric("visible", "ApproximateNumberOfMessagesVisible", s.queueName),
        sqsMetric("inflight", "ApproximateNumberOfMessagesNotVisible", s.queueName),
        {
          id: "pending",
          expression: "visible + inflight",
          label: "Messages waiting or in flight",
          returnData: true,
        },
      ],
      evaluationPeriods: s.idleMinutes,
      comparisonOperator: "LessThanOrEqualToThreshold",
      threshold: 0,
      // SQS stops publishing metrics for a queue that stays empty: silence means idle here.
      treatMissingData: "breaching",
      alarmActions: [scaleIn.arn],
      tags,
    },
    { parent },
  );
}
