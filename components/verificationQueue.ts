import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { schemaFor } from "../contracts";
import { queuePolicy } from "./iam";
import { requireInteger } from "./validation";

/** Arguments of {@link VerificationQueue}. */
export interface VerificationQueueArgs {
  /**
   * How long a received message stays invisible; must exceed the longest restore (the verifier also
   * extends it while it works). Defaults to 21600 (6 h).
   */
  visibilityTimeoutSeconds?: number;
  /** Receives before a message moves to the dead-letter queue (whose alarm pages). Defaults to 3. */
  maxReceiveCount?: number;
  /** Long-poll wait of receives. Defaults to 20. */
  receiveWaitTimeSeconds?: number;
  /** How long messages are kept (both queues). Defaults to 1209600 (14 days, the maximum). */
  messageRetentionSeconds?: number;
  /** Tags for every taggable child. Defaults to none. */
  tags?: Record<string, string>;
}

/** The fields of {@link VerificationQueueArgs} a stack chooses (its `queue` config key). */
export type QueueSpec = Pick<
  VerificationQueueArgs,
  "visibilityTimeoutSeconds" | "maxReceiveCount" | "messageRetentionSeconds"
>;

/**
 * {@link QueueSpec} as JSON. The stack config's `queue` key is validated with it and the component
 * checks its arguments against its bounds, so each bound is stated here only.
 */
export const queueSpecSchema = schemaFor<QueueSpec>()({
  type: "object",
  additionalProperties: false,
  properties: {
    // SQS caps visibility at 12 h; a restore that needs more must extend it (the verifier does).
    visibilityTimeoutSeconds: { type: "integer", minimum: 60, maximum: 43200 },
    maxReceiveCount: { type: "integer", minimum: 1, maximum: 1000 },
    messageRetentionSeconds: { type: "integer", minimum: 60, maximum: 1209600 },
  },
});

/** Long polls SQS allows (20 s at most); not a stack setting, so not in {@link queueSpecSchema}. */
const LONG_POLL_SECONDS = { minimum: 1, maximum: 20 };

/** The resolved settings of the queue, every default applied. */
export interface ResolvedQueueSettings {
  visibilityTimeoutSeconds: number;
  maxReceiveCount: number;
  receiveWaitTimeSeconds: number;
  messageRetentionSeconds: number;
}

/** Applies the defaults of {@link VerificationQueueArgs}, naming the field of any invalid value. */
export function resolveQueueSettings(a: VerificationQueueArgs = {}, where = "queue"): ResolvedQueueSettings {
  const spec = queueSpecSchema.properties;
  return {
    visibilityTimeoutSeconds: requireInteger(
      `${where}.visibilityTimeoutSeconds`,
      a.visibilityTimeoutSeconds ?? 21600,
      spec.visibilityTimeoutSeconds,
    ),
    maxReceiveCount: requireInteger(`${where}.maxReceiveCount`, a.maxReceiveCount ?? 3, spec.maxReceiveCount),
    receiveWaitTimeSeconds: requireInteger(
      `${where}.receiveWaitTimeSeconds`,
      a.receiveWaitTimeSeconds ?? 20,
      LONG_POLL_SECONDS,
    ),
    messageRetentionSeconds: requireInteger(
      `${where}.messageRetentionSeconds`,
      a.messageRetentionSeconds ?? 1209600,
      spec.messageRetentionSeconds,
    ),
  };
}

/**
 * The queue of `backup.created` messages and its dead-letter queue: both encrypted (SQS-managed SSE),
 * redrive after `maxReceiveCount`, the DLQ accepting redrive from this queue only, long polling,
 * and policies refusing non-TLS requests.
 */
export class VerificationQueue extends pulumi.ComponentResource {
  /** The queue of `backup.created` messages. */
  readonly queue: aws.sqs.Queue;
  /** Receives messages after `maxReceiveCount` failed attempts. */
  readonly deadLetterQueue: aws.sqs.Queue;
  /** URL of the queue, as backup.json and verify.json name it. */
  readonly queueUrl: pulumi.Output<string>;
  /** ARN of the queue, which the IAM policies scope. */
  readonly queueArn: pulumi.Output<string>;
  /** Name of the queue (the dimension of its SQS metrics). */
  readonly queueName: pulumi.Output<string>;
  /** ARN of the dead-letter queue. */
  readonly deadLetterQueueArn: pulumi.Output<string>;
  /** Name of the dead-letter queue (its alarm watches it). */
  readonly deadLetterQueueName: pulumi.Output<string>;
  /** The settings in force. */
  readonly settings: ResolvedQueueSettings;

  constructor(name: string, args: VerificationQueueArgs = {}, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:VerificationQueue", name, {}, opts);
    const s = (this.settings = resolveQueueSettings(args));
    const tags = args.tags ?? {};
    const parent = { parent: this };

    this.deadLetterQueue = new aws.sqs.Queue(
      `${name}-dlq`,
      { sqsManagedSseEnabled: true, messageRetentionSeconds: s.messageRetentionSeconds, tags },
      parent,
    );
    this.queue = new aws.sqs.Queue(
      `${name}-queue`,
      {
        sqsManagedSseEnabled: true,
        visibilityTimeoutSeconds: s.visibilityTimeoutSeconds,
        receiveWaitTimeSeconds: s.receiveWaitTimeSeconds,
        messageRetentionSeconds: s.messageRetentionSeconds,
        redrivePolicy: this.deadLetterQueue.arn.apply((deadLetterTargetArn) =>
          JSON.stringify({ deadLetterTargetArn, maxReceiveCount: s.maxReceiveCount }),
        ),
        tags,
      },
      parent,
    );
    new aws.sqs.RedriveAllowPolicy(
      `${name}-dlq-redrive-allow`,
      {
        queueUrl: this.deadLetterQueue.url,
        redriveAllowPolicy: this.queue.arn.apply((arn) =>
          JSON.stringify({ redrivePermission: "byQueue", sourceQueueArns: [arn] }),
        ),
      },
      parent,
    );
    for (const [suffix, q] of [
      ["queue", this.queue],
      ["dlq", this.deadLetterQueue],
    ] as const) {
      new aws.sqs.QueuePolicy(
        `${name}-${suffix}-policy`,
        { queueUrl: q.url, policy: q.arn.apply((arn) => JSON.stringify(queuePolicy(arn))) },
        parent,
      );
    }

    this.queueUrl = this.queue.url;
    this.queueArn = this.queue.arn;
    this.queueName = this.queue.name;
    this.deadLetterQueueArn = this.deadLetterQueue.arn;
    this.deadLetterQueueName = this.deadLetterQueue.name;
    this.registerOutputs({
      queueUrl: this.queueUrl,
      queueArn: this.queueArn,
      deadLetterQueueArn: this.deadLetterQueueArn,
    });
  }
}
