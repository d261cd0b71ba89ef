import * as pulumi from "@pulumi/pulumi";
import { backupConfigSchema, DEFAULT_PREFIX, NAME_PATTERN, parser, schemaFor } from "../contracts";
import { alertedClusterSchema } from "./alarms";
import { alertsSpecSchema } from "./alerting";
import { retentionSchema } from "./lifecycle";
import { MAX_PIPELINE_NAME_LENGTH } from "./names";
import type { ClusterSpec, MysqlBackupPipelineArgs, ReplicaSpec } from "./mysqlBackupPipeline";
import { sshEndpointSchema, type SshEndpoint } from "./replicaAgent";
import { queueSpecSchema } from "./verificationQueue";
import { verifierSpecSchema } from "./verifierFleet";
import type { ServerRelease } from "./verifierUserData";

/**
 * Reads the stack configuration (Pulumi.<stack>.yaml) into the pipeline's arguments. Every structured
 * key is checked against the JSON Schema its component declares beside its arguments; an invalid value
 * fails `pulumi preview` with a message that names the config key and the field inside it. Pulumi.yaml
 * declares the scalar keys.
 */

/** The config namespace: the project name. */
export const CONFIG_NAMESPACE = "mysql-backup-pipeline";
/** The secret config key holding the default SSH private key. */
export const DEFAULT_SSH_KEY_CONFIG = "sshPrivateKey";

/**
 * One entry of `clusters[].replicas` as the config states it: a {@link ReplicaSpec} whose SSH endpoint
 * is flattened into the entry and whose private key is named, not given.
 */
type ReplicaEntry = Omit<ReplicaSpec, "ssh" | "privateKey"> &
  SshEndpoint & {
    /** Name of another secret config key holding this host's private key. Defaults to "sshPrivateKey". */
    sshKeyConfig?: string;
  };

/** One entry of `clusters` as the config states it: a {@link ClusterSpec} with its server flattened. */
type ClusterEntry = Omit<ClusterSpec, "server" | "replicas"> & ServerRelease & { replicas: ReplicaEntry[] };

const onCalendar = { type: "string", minLength: 1, pattern: "^[^\\n\\r]+$" } as const;

const replicaSchema = schemaFor<ReplicaEntry>()({
  type: "object",
  additionalProperties: false,
  required: ["host", "address", "user", "hostKey", "snapshot"],
  properties: {
    host: { type: "string", pattern: NAME_PATTERN },
    ...sshEndpointSchema.properties,
    sshKeyConfig: { type: "string", pattern: "^[A-Za-z][A-Za-z0-9_.-]*$" },
    snapshot: backupConfigSchema.properties.snapshot,
    schedule: onCalendar,
    mysqlOptionFile: backupConfigSchema.properties.mysql.properties.optionFile,
    localDir: backupConfigSchema.properties.localDir,
    lockTimeoutMs: backupConfigSchema.properties.lockTimeoutMs,
    lockMode: backupConfigSchema.properties.lockMode,
  },
});

const clustersSchema = schemaFor<ClusterEntry[]>()({
  type: "array",
  minItems: 1,
  items: {
    type: "object",
    additionalProperties: false,
    required: ["name", "flavor", "version", "replicas"],
    properties: {
      name: alertedClusterSchema.properties.name,
      flavor: { enum: ["mariadb", "mysql"] },
      version: { type: "string", pattern: "^\\d+\\.\\d+$" },
      schedule: onCalendar,
      windowHours: alertedClusterSchema.properties.windowHours,
      pitr: alertedClusterSchema.properties.pitr,
      bastion: sshEndpointSchema,
      replicas: { type: "array", minItems: 1, items: replicaSchema },
    },
  },
});

const httpsEndpointsSchema = schemaFor<string[]>()({
  type: "array",
  items: { type: "string", pattern: "^https://" },
});

const key = (k: string): string => `config key "${CONFIG_NAMESPACE}:${k}"`;
const parseClusters = parser(key("clusters"), clustersSchema);
const parseVerifier = parser(key("verifier"), verifierSpecSchema);
const parseRetention = parser(key("retention"), retentionSchema);
const parseQueue = parser(key("queue"), queueSpecSchema);
const parseAlerts = parser(key("alerts"), alertsSpecSchema);
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
    pitr: c.pitr,
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
      lockMode: r.lockMode,
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

/** The pipeline's name for an environment; the environment's length is bounded by what the name must fit. */
export const pipelineName = (environment: string): string => `${PIPELINE_NAME_PREFIX}${environment}`;
const PIPELINE_NAME_PREFIX = "mysql-backups-";
/** The longest environment name: the pipeline's name, and every name derived from it, must fit AWS's limits. */
export const MAX_ENVIRONMENT_LENGTH = MAX_PIPELINE_NAME_LENGTH - PIPELINE_NAME_PREFIX.length;

/** The environment name; Pulumi.yaml defaults it to "", which means the stack's name. */
function readEnvironment(config: pulumi.Config): string {
  const environment = config.get("environment") || pulumi.getStack();
  if (!new RegExp(`^[a-z0-9][a-z0-9-]{0,${MAX_ENVIRONMENT_LENGTH - 1}}$`).test(environment)) {
    throw new Error(
      `${key("environment")} must be 1-${MAX_ENVIRONMENT_LENGTH} lowercase letters, digits or dashes (it names resources, within AWS's name limits), got ${JSON.stringify(environment)}`,
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
