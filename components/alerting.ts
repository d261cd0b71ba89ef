import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { schemaFor } from "../contracts";
import { clusterAlarms, queueAlarms, type AlarmSpec, type WatchedCluster } from "./alarms";
import { dashboardBody } from "./dashboard";
import { alertKeyPolicy, alertTopicPolicy } from "./iam";
import { ConfigError, requireInteger, requireMatch } from "./validation";

/** Where alarms are delivered. */
export interface AlertEndpoints {
  /** E-mail addresses (each must confirm its subscription). Defaults to none. */
  emails?: string[];
  /** HTTPS endpoints, e.g. a PagerDuty CloudWatch integration URL. Defaults to none. */
  httpsEndpoints?: pulumi.Input<string>[];
}

/** Arguments of {@link Alerting}. */
export interface AlertingArgs {
  /** The clusters to watch (one set of alarms each, and one silence alarm per replica). */
  clusters: WatchedCluster[];
  /** Subscriptions of the alert topic. Defaults to none (the topic still exists for later subscribers). */
  endpoints?: AlertEndpoints;
  /** The verification queue, by name. */
  queueName: pulumi.Input<string>;
  /** Its dead-letter queue, by name. */
  deadLetterQueueName: pulumi.Input<string>;
  /** Age of the oldest waiting message that pages. Defaults to 21600 (6 h). */
  maxMessageAgeSeconds?: number;
  /** Tags for every taggable child. Defaults to none. */
  tags?: Record<string, string>;
}

/**
 * The alert settings a stack chooses (its `alerts` config key; the HTTPS endpoints are a secret config key
 * of their own).
 */
export type AlertsSpec = Pick<AlertEndpoints, "emails"> & Pick<AlertingArgs, "maxMessageAgeSeconds">;

/**
 * {@link AlertsSpec} as JSON. The stack config's `alerts` key is validated with it and Alerting checks its
 * arguments against its bounds, so each bound is stated here only.
 */
export const alertsSpecSchema = schemaFor<AlertsSpec>()({
  type: "object",
  additionalProperties: false,
  properties: {
    emails: { type: "array", items: { type: "string", format: "email" } },
    maxMessageAgeSeconds: { type: "integer", minimum: 300, maximum: 1209600 },
  },
});

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

/**
 * Alerting: an SNS topic encrypted with a key CloudWatch may use, its subscriptions, the alarms of
 * every cluster and of the queue, and a dashboard.
 */
export class Alerting extends pulumi.ComponentResource {
  /** The encrypted topic every alarm notifies. */
  readonly topic: aws.sns.Topic;
  /** ARN of the alert topic (subscribe more endpoints to it). */
  readonly topicArn: pulumi.Output<string>;
  /** The CloudWatch dashboard of the pipeline. */
  readonly dashboardName: pulumi.Output<string>;

  constructor(name: string, args: AlertingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:Alerting", name, {}, opts);
    const tags = args.tags ?? {};
    const maxAge = requireInteger(
      "alerts.maxMessageAgeSeconds",
      args.maxMessageAgeSeconds ?? 21600,
      alertsSpecSchema.properties.maxMessageAgeSeconds,
    );

    this.topic = encryptedTopic(this, name, tags);
    subscribe(this, name, this.topic, args.endpoints ?? {});
    const specs = [
      ...args.clusters.flatMap((c) => clusterAlarms(c).map((s) => ({ ...s, id: `${c.name}-${s.id}` }))),
      ...queueAlarms(args.queueName, args.deadLetterQueueName, maxAge),
    ];
    alarms(this, name, this.topic, specs, tags);
    const board = dashboard(this, name, args.clusters);

    this.topicArn = this.topic.arn;
    this.dashboardName = board.dashboardName;
    this.registerOutputs({ topicArn: this.topicArn, dashboardName: this.dashboardName });
  }
}

/** The alert topic, encrypted with its own key whose policy lets CloudWatch publish, and its policy. */
function encryptedTopic(parent: pulumi.Resource, name: string, tags: Record<string, string>): aws.sns.Topic {
  const identity = aws.getCallerIdentityOutput({}, { parent });
  const partition = aws.getPartitionOutput({}, { parent });
  const key = new aws.kms.Key(
    `${name}-key`,
    {
      description: `Encrypts the alarm notifications of ${name}`,
      enableKeyRotation: true,
      deletionWindowInDays: 30,
      policy: pulumi
        .all([identity.accountId, partition.partition])
        .apply(([account, p]) => JSON.stringify(alertKeyPolicy(account, p))),
      tags,
    },
    { parent },
  );
  const topic = new aws.sns.Topic(`${name}-topic`, { kmsMasterKeyId: key.arn, tags }, { parent });
  new aws.sns.TopicPolicy(
    `${name}-topic-policy`,
    {
      arn: topic.arn,
      policy: pulumi
        .all([topic.arn, identity.accountId])
        .apply(([arn, account]) => JSON.stringify(alertTopicPolicy(arn, account))),
    },
    { parent },
  );
  return topic;
}

/** One subscription per e-mail address and per HTTPS endpoint. */
function subscribe(
  parent: pulumi.Resource,
  name: string,
  topic: aws.sns.Topic,
  endpoints: AlertEndpoints,
): void {
  (endpoints.emails ?? []).forEach((email, i) => {
    requireMatch(`alerts.emails[${i}]`, email, EMAIL, "an e-mail address");
    new aws.sns.TopicSubscription(
      `${name}-email-${i}`,
      { topic: topic.arn, protocol: "email", endpoint: email },
      { parent },
    );
  });
  (endpoints.httpsEndpoints ?? []).forEach((endpoint, i) => {
    const url = pulumi.output(endpoint).apply((u) => {
      if (!/^https:\/\//.test(u))
        throw new ConfigError(`alerts.httpsEndpoints[${i}]`, "must be an https:// URL");
      return u;
    });
    new aws.sns.TopicSubscription(
      `${name}-https-${i}`,
      { topic: topic.arn, protocol: "https", endpoint: url, endpointAutoConfirms: true },
      { parent },
    );
  });
}

/**
 * One alarm per spec, notifying the topic when it fires; a state alarm also when it clears (the page
 * resolves itself when the condition does), an event alarm never (its OK only means the period ended).
 */
function alarms(
  parent: pulumi.Resource,
  name: string,
  topic: aws.sns.Topic,
  specs: AlarmSpec[],
  tags: Record<string, string>,
): void {
  const actions = [topic.arn];
  for (const { id, description, kind, metric, ...evaluation } of specs) {
    new aws.cloudwatch.MetricAlarm(
      `${name}-${id}`,
      {
        alarmDescription: description,
        ...metric,
        ...evaluation,
        datapointsToAlarm: evaluation.datapointsToAlarm ?? evaluation.evaluationPeriods,
        alarmActions: actions,
        ...(kind === "state" ? { okActions: actions } : {}),
        tags,
      },
      { parent },
    );
  }
}

/** The pipeline's dashboard, in the stack's region. */
function dashboard(
  parent: pulumi.Resource,
  name: string,
  clusters: WatchedCluster[],
): aws.cloudwatch.Dashboard {
  const region = aws.getRegionOutput({}, { parent });
  return new aws.cloudwatch.Dashboard(
    `${name}-dashboard`,
    {
      dashboardName: name,
      dashboardBody: region.region.apply((r) =>
        dashboardBody(
          clusters.map((c) => c.name),
          r,
        ),
      ),
    },
    { parent },
  );
}
