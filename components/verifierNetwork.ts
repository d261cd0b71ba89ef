import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "./validation";

/**
 * How the verifiers reach S3 without a NAT gateway (which bills about $45 per TB of archives verified): an
 * S3 gateway endpoint (free) on the route tables of their subnets, which the stack creates or requires.
 */
export type S3EndpointSpec =
  | {
      /** Create one in `vpcId` on these route tables (those of every verifier subnet). */
      create: { vpcId: string; routeTableIds: string[] };
    }
  | {
      /** Use this existing gateway endpoint (`vpce-…`), which must serve every verifier subnet. */
      existing: string;
    };

/** {@link S3EndpointSpec} as JSON, part of the `verifier` config key. */
export const s3EndpointSchema = {
  oneOf: [
    {
      type: "object",
      additionalProperties: false,
      required: ["create"],
      properties: {
        create: {
          type: "object",
          additionalProperties: false,
          required: ["vpcId", "routeTableIds"],
          properties: {
            vpcId: { type: "string", pattern: "^vpc-[0-9a-f]+$" },
            routeTableIds: {
              type: "array",
              minItems: 1,
              items: { type: "string", pattern: "^rtb-[0-9a-f]+$" },
            },
          },
        },
      },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["existing"],
      properties: { existing: { type: "string", pattern: "^vpce-[0-9a-f]+$" } },
    },
  ],
} as const;

/** An endpoint as the check sees it. */
export interface EndpointFacts {
  id: string;
  vpcEndpointType: string;
  serviceName: string;
  routeTableIds: string[];
}

/**
 * The problem with an endpoint for these subnets' route tables, or undefined: it must be a gateway endpoint
 * for S3 in the region, on the route table of every verifier subnet (else that subnet's downloads go
 * through NAT, or nowhere).
 */
export function s3EndpointProblem(
  endpoint: EndpointFacts,
  region: string,
  subnetRouteTables: Array<{ subnetId: string; routeTableId: string }>,
): string | undefined {
  if (endpoint.vpcEndpointType !== "Gateway" || endpoint.serviceName !== `com.amazonaws.${region}.s3`) {
    return `${endpoint.id} has type ${endpoint.vpcEndpointType} and service ${endpoint.serviceName}; it must be a Gateway endpoint for com.amazonaws.${region}.s3`;
  }
  const missing = subnetRouteTables.filter((s) => !endpoint.routeTableIds.includes(s.routeTableId));
  if (missing.length === 0) return undefined;
  return `${endpoint.id} is not on the route table of ${missing.map((s) => `${s.subnetId} (${s.routeTableId})`).join(", ")}: add the route table to the endpoint, or S3 traffic of those subnets goes through NAT`;
}

/**
 * The S3 gateway endpoint of the verifier subnets: created on the configured route tables, or looked up.
 * `checked` is its id once each subnet's route table is known to be one it serves, and fails naming the
 * subnet otherwise: the stack program exports it, so `pulumi preview` fails. `id` never fails (resources
 * may name the endpoint without inheriting the failure twice). A subnet's route table is its explicit
 * association (the lookup cannot see the VPC's main table).
 */
export function s3GatewayEndpoint(
  parent: pulumi.Resource,
  name: string,
  a: { spec: S3EndpointSpec; subnetIds: pulumi.Input<string>[]; region: pulumi.Input<string> },
  tags: Record<string, string>,
): { id: pulumi.Output<string>; checked: pulumi.Output<string> } {
  const routeTables = pulumi.all(
    a.subnetIds.map((subnetId) =>
      aws.ec2
        .getRouteTableOutput({ subnetId }, { parent })
        .apply((t) => ({ subnetId: t.subnetId, routeTableId: t.routeTableId })),
    ),
  );
  const endpoint: pulumi.Output<EndpointFacts> =
    "create" in a.spec
      ? createdEndpoint(parent, name, a.spec.create, a.region, tags)
      : aws.ec2.getVpcEndpointOutput({ id: a.spec.existing }, { parent }).apply((e) => ({
          id: e.id,
          vpcEndpointType: e.vpcEndpointType,
          serviceName: e.serviceName,
          routeTableIds: e.routeTableIds,
        }));
  const checked = pulumi.all([endpoint, a.region, routeTables]).apply(([e, region, tables]) => {
    const problem = s3EndpointProblem(e, region, tables);
    if (problem) throw new ConfigError("verifier.s3Endpoint", problem);
    return e.id;
  });
  return { id: endpoint.id, checked };
}

function createdEndpoint(
  parent: pulumi.Resource,
  name: string,
  create: { vpcId: string; routeTableIds: string[] },
  region: pulumi.Input<string>,
  tags: Record<string, string>,
): pulumi.Output<EndpointFacts> {
  const serviceName = pulumi.interpolate`com.amazonaws.${region}.s3`;
  const created = new aws.ec2.VpcEndpoint(
    `${name}-s3-endpoint`,
    {
      vpcId: create.vpcId,
      serviceName,
      vpcEndpointType: "Gateway",
      routeTableIds: create.routeTableIds,
      tags,
    },
    { parent },
  );
  return pulumi.all([created.id, serviceName]).apply(([id, service]) => ({
    id,
    vpcEndpointType: "Gateway",
    serviceName: service,
    routeTableIds: create.routeTableIds,
  }));
}
