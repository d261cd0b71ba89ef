/**
 * The S3 object tags of the pipeline, which IAM, the bucket policy and the lifecycle rules read. The
 * verifier tags a backup's objects with its verdict; the replica tags them, when it creates them, with the
 * retention class that decides how long the lifecycle keeps them (grandfather-father-son).
 */

/** `verified=true|false`, set by the verifier after each verdict. */
export const VERDICT_TAG = "verified";

/**
 * `retention=daily|monthly`, set by the replica when it creates an archive or manifest (the first backup
 * of a UTC month is `monthly`). The bucket policy refuses to change or remove it once set.
 */
export const RETENTION_TAG = "retention";

/** The retention classes the lifecycle knows, from shortest-lived to longest-lived. */
export const RETENTION_CLASSES = ["daily", "monthly"] as const;

/** One retention class. */
export type RetentionClass = (typeof RETENTION_CLASSES)[number];
