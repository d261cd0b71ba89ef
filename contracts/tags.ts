/**
 * Tags every taggable resource of the pipeline carries. The components apply them and the policy
 * pack requires them, so cost reports and incident tooling can always find the pipeline's parts.
 */
export const TAG_PIPELINE = "mysql-backup-pipeline:pipeline";
export const TAG_ENVIRONMENT = "mysql-backup-pipeline:environment";
export const TAG_MANAGED_BY = "mysql-backup-pipeline:managed-by";

export const REQUIRED_TAG_KEYS = [TAG_PIPELINE, TAG_ENVIRONMENT, TAG_MANAGED_BY] as const;

/** The tags for one deployment of the pipeline. */
export function pipelineTags(pipeline: string, environment: string): Record<string, string> {
  return { [TAG_PIPELINE]: pipeline, [TAG_ENVIRONMENT]: environment, [TAG_MANAGED_BY]: "pulumi" };
}
