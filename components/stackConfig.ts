import * as pulumi from "@pulumi/pulumi";
import { backupConfigSchema, DEFAULT_PREFIX, NAME_PATTERN, parser, schemaFor } from "../contracts";
import type { RetentionArgs } from "./backupBucket";
import type { ClusterSpec, MysqlBackupPipelineArgs, VerifierSpec } from "./mysqlBackupPipeline";
import type { VerificationQueueArgs } from "./verificationQueue";

/**
 * Reads the stack configuration (Pulumi.<stack>.yaml) into the pipeline's arguments. Every structured
 * key is checked against a JSON Schema; an invalid value fails `pulumi preview` with a message that
 * names the config key and the field inside it. Pulumi.yaml declares the same keys.
 */

/** The config namespace: the project name. */
export const CONFIG_NAMESPACE = "mysql-backup-pipeline";
/** The secret config key holding the default SSH private key. */
export const DEFAULT_SSH_KEY_CONFIG = "sshPrivateKey";

const name = { type: "string", pattern: NAME_PATTERN } as const;
const positive = { type: "integer", minimum: 1 } as const;
const sshEndpoint = {
  type: "object",
  additionalProperties: false,
  required: ["address", "user", "hostKey"],
  properties: {
    address: { type: "string", minLength: 1 },
    port: { type: "integer", minimum: 1, maximum: 65535 },
    user: { type: "string", pattern: "^[a-z_][a-z0-9_-]*$" },
    // A pinned public key: `<type> <base64>` as in known_hosts (without the host name).
    hostKey: {
      type: "string",
      pattern: "^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$",
    },
  },
} as const;
const onCalendar = { type: "string", minLength: 1, pattern: "^[^\\n\\r]+$" } as const;

/** The schema of one replica entry of `clusters[].replicas`. */
const replicaSchema = {
  type: "object",
  additionalProperties: false,
  required: ["host", "address", "user", "hostKey", "snapshot"],
  properties: {
    host: name,
    ...sshEndpoint.properties,
    sshKeyConfig: { type: "string", pattern: "^[A-Za-z][A-Za-z0-9_.-]*$" },
    snapshot: backupConfigSchema.properties.snapshot,
    schedule: onCalendar,
    mysqlOptionFile: { type: "string", pattern: "^/" },
    localDir: { type: "string", pattern: "^/" },
    lockTimeoutMs: backupConfigSchema.properties.lockTimeoutMs,
  },
} as const;

const clustersSchema = schemaFor<RawCluster[]>()({
  type: "array",
  minItems: 1,
  items: {
    type: "object",
    additionalProperties: false,
    required: ["name", "flavor", "version", "replicas"],
    properties: {
      name,
      flavor: { enum: ["mariadb", "mysql"] },
      version: { type: "string", pattern: "^\\d+\\.\\d+$" },
      schedule: onCalendar,
      windowHours: { type: "integer", minimum: 1, maximum: 168 },
      bastion: sshEndpoint,
      replicas: { type: "array", minItems: 1, items: replicaSchema },
    },
  },
});

const verifierSchema = schemaFor<RawVerifier>()({
  type: "object",
  additionalProperties: false,
  required: ["subnetIds", "securityGroupIds"],
  properties: {
    subnetIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^subnet-[0-9a-f]+$" } },
    securityGroupIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^sg-[0-9a-f]+$" } },
    instanceType: { type: "string", pattern: "^[a-z0-9-]+\\.[a-z0-9]+$" },
    maxInstances: { type: "integer", minimum: 1, maximum: 100 },
    scratchVolumeGiB: { type: "integer", minimum: 20, maximum: 16384 },
    idleMinutes: { type: "integer", minimum: 5, maximum: 1440 },
    ami: {
      type: "object",
      additionalProperties: false,
      properties: {
        id: { type: "string", pattern: "^ami-[0-9a-f]{8,17}$" },
        owner: { type: "string", pattern: "^(\\d{12}|amazon|self|aws-marketplace)$" },
        namePattern: { type: "string", minLength: 1 },
      },
    },
  },
});

const retentionSchema = schemaFor<RetentionArgs>()({
  type: "object",
  additionalProperties: false,
  properties: {
    mode: { enum: ["GOVERNANCE", "COMPLIANCE"] },
    days: positive,
    expireDays: positive,
    infrequentAccessDays: { type: "integer", minimum: 0 },
    glacierDays: { type: "integer", minimum: 0 },
    noncurrentDays: positive,
  },
});

const queueSchema = schemaFor<RawQueue>()({
  type: "object",
  additionalProperties: false,
  properties: {
    visibilityTimeoutSeconds: { type: "integer", minimum: 60, maximum: 43200 },
    maxReceiveCount: { type: "integer", minimum: 1, maximum: 1000 },
    messageRetentionSeconds: { type: "integer", minimum: 60, maximum: 1209600 },
  },
});

const alertsSchema = schemaFor<RawAlerts>()({
  type: "object",
  additionalProperties: false,
  properties: {
    emails: { type: "array", items: { type: "string", format: "email" } },
    maxMessageAgeSeconds: { type: "integer", minimum: 300, maximum: 1209600 },
  },
});

const httpsEndpointsSchema = schemaFor<string[]>()({
  type: "array",
  items: { type: "string", pattern: "^https://" },
});

interface RawReplica {
  host: string;
  address: string;
  port?: number;
  user: string;
  hostKey: string;
  sshKeyConfig?: string;
  snapshot: ClusterSpec["replicas"][number]["snapshot"];
  schedule?: string;
  mysqlOptionFile?: string;
  localDir?: string;
  lockTimeoutMs?: number;
}
interface RawCluster {
  name: string;
  flavor: "mariadb" | "mysql";
  version: string;
  schedule?: string;
  windowHours?: number;
  bastion?: ClusterSpec["bastion"];
  replicas: RawReplica[];
}
interface RawAlerts {
  emails?: string[];
  maxMessageAgeSeconds?: number;
}
type RawVerifier = Omit<VerifierSpec, "subnetIds" | "securityGroupIds"> & {
  subnetIds: string[];
  securityGroupIds: string[];
};
type RawQueue = Pick<
  VerificationQueueArgs,
  "visibilityTimeoutSeconds" | "maxReceiveCount" | "messageRetentionSeconds"
>;

const key = (k: string): string => `config key "${CONFIG_NAMESPACE}:${k}"`;
const parseClusters = parser(key("clusters"), clustersSchema);
const parseVerifier = parser(key("verifier"), verifierSchema);
const parseRetention = parser(key("retention"), retentionSchema);
const parseQueue = parser(key("queue"), queueSchema);
const parseAlerts = parser(key("alerts"), alertsSchema);
const parseHttpsEndpoints = parser(key("alertHttpsEndpoints"), httpsEndpointsSchema);

/** Everything the stack program needs besides the bundle. */
export type StackSettings = Omit<MysqlBackupPipelineArgs, "bundle">;

/** Reads and validates the stack config; throws naming the config key and field of the first problem. */
export function readStackSettings(config = new pulumi.Config(CONFIG_NAMESPACE)): StackSettings {
  const clusters = parseClusters(config.requireObject("clusters")).map((c): ClusterSpec => ({
    name: c.name,
    server: { flavor: c.flavor, version: c.version },
    schedule: c.schedule,
    windowHours: c.windowHours,
    bastion: c.bastion,
    replicas: c.replicas.map((r) => ({
      host: r.host,
      ssh: { address: r.address, port: r.port, user: r.user, hostKey: r.hostKey },
      // requireSecret fails naming the key when it is missing, and keeps the value secret.
      privateKey: config.requireSecret(r.sshKeyConfig ?? DEFAULT_SSH_KEY_CONFIG),
      snapshot: r.snapshot,
      schedule: r.schedule,
      mysqlOptionFile: r.mysqlOptionFile,
      localDir: r.localDir,
      lockTimeoutMs: r.lockTimeoutMs,
    })),
  }));
  const alerts = parseAlerts(config.getObject("alerts") ?? {});
  return {
    environment: readEnvironment(config),
    prefix: config.get("prefix", { pattern: /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/ }) ?? DEFAULT_PREFIX,
    retention: parseRetention(config.getObject("retention") ?? {}),
    // Pulumi.yaml defaults it to "" (the CLI requires a default for an optional key): empty means none.
    replicationRegion:
      config.get("replicationRegion", { pattern: /^$|^[a-z]{2}(-[a-z]+)+-\d$/ }) || undefined,
    queue: parseQueue(config.getObject("queue") ?? {}),
    clusters,
    verifier: parseVerifier(config.requireObject("verifier")),
    alerts: {
      emails: alerts.emails,
      maxMessageAgeSeconds: alerts.maxMessageAgeSeconds,
      httpsEndpoints: readHttpsEndpoints().map((url) => pulumi.secret(url)),
    },
    forceDestroy: config.getBoolean("forceDestroy") ?? false,
  };
}

/** The environment name; Pulumi.yaml defaults it to "", which means the stack's name. */
function readEnvironment(config: pulumi.Config): string {
  const environment = config.get("environment") || pulumi.getStack();
  if (!/^[a-z0-9][a-z0-9-]{0,20}$/.test(environment)) {
    throw new Error(
      `${key("environment")} must be 1-21 lowercase letters, digits or dashes (it names resources), got ${JSON.stringify(environment)}`,
    );
  }
  return environment;
}

/**
 * The HTTPS alert endpoints (PagerDuty URLs carry their integration key, so the key is secret). Read
 * raw rather than with getSecretObject: the number of subscriptions must be known while the program
 * runs; each URL is wrapped as a secret again, and validation errors never print a URL.
 */
function readHttpsEndpoints(): string[] {
  const raw = pulumi.runtime.getConfig(`${CONFIG_NAMESPACE}:alertHttpsEndpoints`);
  if (raw === undefined) return [];
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new Error(
      `${key("alertHttpsEndpoints")} must be a list of https:// URLs (pulumi config set --secret --path 'alertHttpsEndpoints[0]' URL)`,
    );
  }
  return parseHttpsEndpoints(value);
}
