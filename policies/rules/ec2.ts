import * as aws from "@pulumi/aws";
import { type ResourceValidationPolicy, validateResourceOfType } from "@pulumi/policy";

import { isRecord, list } from "./documents";

/**
 * Launch template rules. The EC2 API takes these flags as strings ("true"/"false"), and the
 * `@pulumi/aws` inputs are typed so; a boolean passed through is accepted as the same value.
 */
function flag(value: unknown): boolean | undefined {
  if (value === true || value === "true") return true;
  if (value === false || value === "false") return false;
  return undefined;
}

/** IMDSv2 only, with a hop limit that keeps the credentials on the instance. */
export const launchTemplateRequiresImdsv2: ResourceValidationPolicy = {
  name: "ec2-launch-template-imdsv2",
  description:
    "Launch templates require IMDSv2 session tokens, with a response hop limit of at most 1 by default.",
  enforcementLevel: "mandatory",
  severity: "high",
  configSchema: {
    properties: { maximumHopLimit: { type: "integer", minimum: 1, maximum: 64, default: 1 } },
  },
  validateResource: validateResourceOfType(aws.ec2.LaunchTemplate, (template, args, report) => {
    const { maximumHopLimit = 1 } = args.getConfig<{ maximumHopLimit?: number }>();
    const metadata = isRecord(template.metadataOptions) ? template.metadataOptions : {};
    // A disabled metadata endpoint exposes no credentials at all, which is stricter than IMDSv2.
    if (metadata.httpEndpoint === "disabled") return;
    if (metadata.httpTokens !== "required") {
      report(
        `Instances may use IMDSv1 (metadataOptions.httpTokens is ${JSON.stringify(metadata.httpTokens ?? null)}). ` +
          `Set metadataOptions { httpTokens: "required", httpPutResponseHopLimit: ${maximumHopLimit} } on the aws.ec2.LaunchTemplate.`,
      );
    }
    const hops = metadata.httpPutResponseHopLimit;
    if (typeof hops === "number" && hops > maximumHopLimit) {
      report(
        `metadataOptions.httpPutResponseHopLimit is ${hops}, so containers or forwarded traffic can reach instance ` +
          `credentials. Set it to ${maximumHopLimit}.`,
      );
    }
  }),
};

/** Every EBS volume encrypted, and the volumes declared so the AMI's defaults cannot decide. */
export const launchTemplateEncryptsVolumes: ResourceValidationPolicy = {
  name: "ec2-launch-template-encrypted-volumes",
  description: "Launch templates declare their EBS volumes, every one encrypted.",
  enforcementLevel: "mandatory",
  severity: "high",
  validateResource: validateResourceOfType(aws.ec2.LaunchTemplate, (template, _args, report) => {
    const volumes = list(template.blockDeviceMappings)
      .filter(isRecord)
      .filter((m) => isRecord(m.ebs));
    if (volumes.length === 0) {
      report(
        `The template declares no EBS volume, so the AMI's snapshot decides whether disks are encrypted. Add ` +
          `blockDeviceMappings [{ deviceName, ebs: { encrypted: "true", volumeType: "gp3", volumeSize } }].`,
      );
    }
    for (const volume of volumes) {
      const ebs = volume.ebs as Record<string, unknown>;
      if (flag(ebs.encrypted) !== true) {
        report(
          `EBS volume ${JSON.stringify(volume.deviceName ?? "(no device name)")} is not encrypted ` +
            `(ebs.encrypted is ${JSON.stringify(ebs.encrypted ?? null)}). Set ebs.encrypted to "true".`,
        );
      }
    }
  }),
};

/** No public IP address: network interfaces say so explicitly, so the subnet's default cannot add one. */
export const launchTemplateNoPublicIp: ResourceValidationPolicy = {
  name: "ec2-launch-template-no-public-ip",
  description:
    'Launch templates give instances no public IP address (associatePublicIpAddress "false" on every interface).',
  enforcementLevel: "mandatory",
  severity: "high",
  validateResource: validateResourceOfType(aws.ec2.LaunchTemplate, (template, _args, report) => {
    const interfaces = list(template.networkInterfaces).filter(isRecord);
    if (interfaces.length === 0) {
      report(
        `The template declares no network interface, so the subnet's MapPublicIpOnLaunch decides whether ` +
          `instances get a public IP. Add networkInterfaces [{ associatePublicIpAddress: "false", securityGroups }].`,
      );
    }
    interfaces.forEach((nic, index) => {
      if (flag(nic.associatePublicIpAddress) !== false) {
        report(
          `Network interface ${nic.deviceIndex ?? index} has associatePublicIpAddress ` +
            `${JSON.stringify(nic.associatePublicIpAddress ?? null)}. Set it to "false"; reach instances through SSM or a bastion.`,
        );
      }
    });
  }),
};

/** Every launch template rule. */
export const launchTemplateRules = [
  launchTemplateRequiresImdsv2,
  launchTemplateEncryptsVolumes,
  launchTemplateNoPublicIp,
];
