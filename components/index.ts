/** The Pulumi components of the pipeline (DESIGN §5), one per file. */
export * from "./alerting";
export * from "./backupBucket";
export * from "./dashboard";
export * from "./iam";
export * from "./mysqlBackupPipeline";
export * from "./operatorRole";
export * from "./replicaAgent";
export * from "./stackConfig";
export * from "./validation";
export * from "./verificationQueue";
export * from "./verifierFleet";
