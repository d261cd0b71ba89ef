import { appendFile } from "node:fs/promises";
import { PutMetricDataCommand, type CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { METRIC_NAMESPACE, type MetricDatum, type MetricsSink as MetricsSinkConfig } from "../../contracts";
import { prometheusSink } from "./prometheus";

/** Where metric data points go. Both sinks take the same data, so a local run shows what CloudWatch would get. */
export interface MetricsSink {
  put(data: MetricDatum[]): Promise<void>;
}

/** One JSON object per line, each with the namespace; what the lab and tests read. */
export function fileSink(path: string): MetricsSink {
  return {
    async put(data) {
      if (data.length === 0) return;
      await appendFile(
        path,
        data.map((d) => JSON.stringify({ namespace: METRIC_NAMESPACE, ...d }) + "\n").join(""),
      );
    },
  };
}

/** PutMetricData in the pipeline's namespace, in batches of the API's limit. */
export function cloudWatchSink(client: CloudWatchClient): MetricsSink {
  return {
    async put(data) {
      for (let i = 0; i < data.length; i += 1000) {
        await client.send(
          new PutMetricDataCommand({
            Namespace: METRIC_NAMESPACE,
            MetricData: data.slice(i, i + 1000).map((d) => ({
              MetricName: d.name,
              Value: d.value,
              Unit: d.unit,
              Timestamp: new Date(d.timestamp),
              Dimensions: Object.entries(d.dimensions).map(([Name, Value]) => ({ Name, Value })),
            })),
          }),
        );
      }
    },
  };
}

/** The sink the config asks for; CloudWatch when the config is silent. */
export function sinkFromConfig(
  config: MetricsSinkConfig | undefined,
  cloudwatch: CloudWatchClient,
): MetricsSink {
  switch (config?.sink) {
    case "file":
      return fileSink(config.path);
    case "prometheus":
      return prometheusSink(config.path);
    default:
      return cloudWatchSink(cloudwatch);
  }
}
