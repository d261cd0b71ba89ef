import { dirname } from "node:path";
import { stringify as toYaml } from "yaml";
import { parseVerifyConfig, type ServerFlavor, type VerifyConfig } from "../contracts";
import {
  CONFIG_DIR,
  INSTALLED_BINARY,
  UNIT_DIR,
  VERIFIER_LOG_FILE,
  VERIFIER_SCRATCH_DIR,
  VERIFIER_SERVICE,
  VERIFY_CONFIG_PATH,
  verifierServiceUnit,
} from "../contracts/units";
import { KEYSERVER, NODESOURCE_KEY, VENDOR_KEY_FINGERPRINTS } from "./aptKeys";

/** The server the backups come from; the verifier installs the same flavor and major version. */
export interface ServerRelease {
  flavor: ServerFlavor;
  /** Major version: MariaDB `10.6`, `10.11`, `11.4`…; MySQL `8.0` or `8.4`. */
  version: string;
}

/** Where the verifier restores; lives on the scratch (root) volume, the one path its unit writes. */
export const SCRATCH_DIR = VERIFIER_SCRATCH_DIR;

/** Renders verify.json; it passes the contract's parser or this throws, naming the key. */
export function renderVerifyConfig(i: {
  queueUrl: string;
  visibilityTimeoutSeconds: number;
  /** The queue's redrive count: a segment is deferred at most one receive less, so its verdict comes first. */
  maxReceiveCount?: number;
  region: string;
  keyArn: string;
}): VerifyConfig {
  return parseVerifyConfig({
    sqs: { queueUrl: i.queueUrl, waitTimeSeconds: 20, visibilityTimeoutSeconds: i.visibilityTimeoutSeconds },
    scratchDir: SCRATCH_DIR,
    // The key ARN, as the bucket policy compares the SSE key header against it. Verdict tags on the
    // backup's objects (`verified=true|false`): the role may set only that tag key (and restate `retention`).
    s3: { kmsKeyId: i.keyArn, tagObjects: true },
    mysqld: { user: "mysql" },
    aws: { region: i.region },
    metrics: { sink: "cloudwatch" },
    ...(i.maxReceiveCount === undefined
      ? {}
      : { segments: { maxDeferrals: Math.max(0, i.maxReceiveCount - 1) } }),
  } satisfies VerifyConfig);
}

/** An APT source in cloud-init's format: an inline key, or a keyserver and a full fingerprint. */
type AptSource = { source: string } & ({ key: string } | { keyid: string; keyserver: string });

/** The APT sources and package names that install a server release on Debian 12. */
export function serverPackages(server: ServerRelease): {
  sources: Record<string, AptSource>;
  packages: string[];
} {
  if (server.flavor === "mariadb") {
    // Debian 12 ships 10.11 itself; any other release comes from MariaDB's own repository.
    if (server.version === "10.11") return { sources: {}, packages: ["mariadb-server", "mariadb-client"] };
    return {
      sources: {
        "mariadb.list": {
          source: `deb [signed-by=$KEY_FILE] https://dlm.mariadb.com/repo/mariadb-server/${server.version}/repo/debian bookworm main`,
          keyid: VENDOR_KEY_FINGERPRINTS.mariadb,
          keyserver: KEYSERVER,
        },
      },
      packages: ["mariadb-server", "mariadb-client"],
    };
  }
  const component = server.version === "8.4" ? "mysql-8.4-lts" : `mysql-${server.version}`;
  return {
    sources: {
      "mysql.list": {
        source: `deb [signed-by=$KEY_FILE] https://repo.mysql.com/apt/debian bookworm ${component}`,
        keyid: VENDOR_KEY_FINGERPRINTS.mysql,
        keyserver: KEYSERVER,
      },
    },
    packages: ["mysql-server", "mysql-client"],
  };
}

/**
 * How a verifier gets its software: installed at boot from APT (Debian's mirror, NodeSource, the server
 * vendor), or already in a baked image, which makes every boot identical and needs no egress but AWS's.
 */
export type VerifierImage = { baked: false; nodeMajorVersion: number } | { baked: true };

/** The exact bundle object the instances boot: key, version and content hash. */
export interface BundleRef {
  bucket: string;
  key: string;
  versionId: string;
  sha256: string;
}

/** The values the verifier's cloud-init user-data is rendered from. */
export interface UserDataInput {
  server: ServerRelease;
  image: VerifierImage;
  bundle: BundleRef;
  /** The stack's region: the CloudWatch agent comes from AWS's bucket in it. */
  region: string;
  /** The log group the CloudWatch agent ships the verifier's and cloud-init's logs to. */
  logGroupName: string;
  verifyConfig: VerifyConfig;
}

/** The CloudWatch agent's config (its own file), and where it goes. */
export const LOG_AGENT_CONFIG_PATH = "/opt/aws/amazon-cloudwatch-agent/etc/mysql-backup.json";

/** What the CloudWatch agent ships: the verifier's log and cloud-init's (boot failures), per instance. */
export function logAgentConfig(logGroupName: string): object {
  const file = (path: string, stream: string) => ({
    file_path: path,
    log_group_name: logGroupName,
    log_stream_name: `{instance_id}/${stream}`,
    timezone: "UTC",
  });
  return {
    logs: {
      logs_collected: {
        files: {
          collect_list: [
            file(VERIFIER_LOG_FILE, "verifier"),
            file("/var/log/cloud-init-output.log", "cloud-init"),
          ],
        },
      },
    },
  };
}

/**
 * Stops the boot for good: the launch template's shutdown behaviour is "terminate", so the Auto Scaling
 * group replaces the instance instead of keeping a stopped one.
 */
const giveUp = (why: string): string => `{ echo "mysql-backup verifier: ${why}" >&2; poweroff; exit 1; }`;

/** Downloads the exact bundle version with retries and checks its sha256; gives up on failure. */
function fetchBundleScript(b: BundleRef, region: string, download: string): string {
  const get = `aws s3api get-object --region ${region} --bucket ${b.bucket} --key ${b.key} --version-id ${b.versionId} ${download} >/dev/null`;
  return [
    `for attempt in 1 2 3 4 5 6; do ${get} && break; sleep 10; done`,
    `echo "${b.sha256}  ${download}" | sha256sum -c --quiet - || ${giveUp(`bundle s3://${b.bucket}/${b.key} (version ${b.versionId}) missing or corrupt`)}`,
  ].join("; ");
}

/**
 * Starts the CloudWatch agent with the pipeline's config. At an install boot it first comes from AWS's
 * own bucket in the region (through the S3 gateway endpoint, unsigned: the bucket is public); a baked image
 * has it already. Without it the verifier still runs, its logs only on the instance.
 */
function logAgentScript(image: VerifierImage, region: string): string {
  const ctl = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl";
  const deb = "/var/tmp/amazon-cloudwatch-agent.deb";
  const install = image.baked
    ? []
    : [
        `aws s3 cp --no-sign-request --region ${region} s3://amazoncloudwatch-agent-${region}/debian/amd64/latest/amazon-cloudwatch-agent.deb ${deb} && dpkg -i -E ${deb}; rm -f ${deb}`,
      ];
  return [
    ...install,
    `if [ -x ${ctl} ]; then ${ctl} -a fetch-config -m ec2 -s -c file:${LOG_AGENT_CONFIG_PATH}; else echo "mysql-backup verifier: no CloudWatch agent, logs stay on the instance" >&2; fi`,
  ].join("; ");
}

/** The APT part of an install boot: Node from NodeSource (inline key), the server, the tools. */
function aptConfig(server: ServerRelease, nodeMajorVersion: number): object {
  const packages = serverPackages(server);
  return {
    package_update: true,
    apt: {
      sources: {
        "nodesource.list": {
          source: `deb [signed-by=$KEY_FILE] https://deb.nodesource.com/node_${nodeMajorVersion}.x nodistro main`,
          key: NODESOURCE_KEY.armored,
        },
        ...packages.sources,
      },
    },
    packages: ["nodejs", ...packages.packages, "awscli", "zstd", "tar"],
  };
}

/**
 * cloud-init user-data: installs Node and the matching server (unless the image is baked), writes
 * verify.json, the unit and the log agent's config, starts the agent, fetches the exact bundle version and
 * checks its sha256 before installing it, keeps the distribution's own server stopped (only scratch servers
 * run), starts the verifier. A boot that cannot get a usable bundle or Node gives up and terminates.
 */
export function renderUserData(i: UserDataInput): string {
  const download = `${INSTALLED_BINARY}.download`;
  const cloudConfig = {
    ...(i.image.baked ? {} : aptConfig(i.server, i.image.nodeMajorVersion)),
    write_files: [
      {
        path: VERIFY_CONFIG_PATH,
        owner: "root:root",
        permissions: "0640",
        content: JSON.stringify(i.verifyConfig, null, 2) + "\n",
      },
      {
        path: `${UNIT_DIR}/${VERIFIER_SERVICE}`,
        owner: "root:root",
        permissions: "0644",
        content: verifierServiceUnit(),
      },
      {
        path: LOG_AGENT_CONFIG_PATH,
        owner: "root:root",
        permissions: "0644",
        content: JSON.stringify(logAgentConfig(i.logGroupName), null, 2) + "\n",
      },
    ],
    runcmd: [
      ["sh", "-c", "systemctl disable --now mariadb.service mysql.service 2>/dev/null || true"],
      ["chmod", "0750", CONFIG_DIR],
      ["install", "-d", "-m", "0700", SCRATCH_DIR],
      // systemd opens the unit's log file before it creates its LogsDirectory: the directory must exist.
      ["install", "-d", "-m", "0750", dirname(VERIFIER_LOG_FILE)],
      ["sh", "-c", logAgentScript(i.image, i.region)],
      ["sh", "-c", `command -v node >/dev/null || ${giveUp("node is not installed")}`],
      // Retried (IAM and the network can lag at boot); if the bundle never arrives or its hash is wrong,
      // the instance terminates so the Auto Scaling group replaces it instead of idling.
      ["sh", "-c", fetchBundleScript(i.bundle, i.region, download)],
      ["install", "-o", "root", "-g", "root", "-m", "0755", download, INSTALLED_BINARY],
      ["rm", "-f", download],
      ["systemctl", "daemon-reload"],
      ["systemctl", "enable", "--now", VERIFIER_SERVICE],
    ],
  };
  return `#cloud-config\n${toYaml(cloudConfig, { lineWidth: 0 })}`;
}
