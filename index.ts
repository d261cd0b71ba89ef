/**
 * The stack program (`pulumi up`): reads the stack config, bundles the host scripts, builds one
 * MysqlBackupPipeline and exports what operators and the host side need. Exported as a function, as
 * Pulumi allows, so the tests run exactly this program under mocks.
 */
import { MysqlBackupPipeline, pipelineName, readStackSettings } from "./components";
import { bundleHostScripts } from "./scripts/bundle";

export = async function mysqlBackupStack() {
  // Config first: a mistake there should fail before anything is built.
  const settings = readStackSettings();
  const bundle = await bundleHostScripts();
  const pipeline = new MysqlBackupPipeline(pipelineName(settings.environment), { ...settings, bundle });
  return {
    bucketName: pipeline.bucketName,
    kmsKeyArn: pipeline.kmsKeyArn,
    queueUrl: pipeline.queueUrl,
    deadLetterQueueUrl: pipeline.deadLetterQueueUrl,
    alertTopicArn: pipeline.alertTopicArn,
    verifierRoleArn: pipeline.verifierRoleArn,
    verifierGroupName: pipeline.verifierGroupName,
    verifierLogGroupName: pipeline.verifierLogGroupName,
    verifierS3EndpointId: pipeline.verifierS3EndpointId,
    replicaRoleArns: pipeline.replicaRoleArns,
    replicaInstanceProfiles: pipeline.replicaInstanceProfiles,
    dashboardName: pipeline.dashboardName,
    operatorRoleArn: pipeline.operatorRoleArn,
    statusConfig: pipeline.statusConfig,
    bundleSha256: bundle.sha256,
  };
};
