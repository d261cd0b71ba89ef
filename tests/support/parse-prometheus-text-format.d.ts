/** Types of the parser used by the tests (the package ships none). */
declare module "parse-prometheus-text-format" {
  /** One metric family: its name, HELP, TYPE (upper case) and samples, values as the text spells them. */
  interface PrometheusFamily {
    name: string;
    help: string;
    type: "COUNTER" | "GAUGE" | "SUMMARY" | "HISTOGRAM" | "UNTYPED";
    metrics: Array<{ value: string; labels?: Record<string, string>; timestamp_ms?: string }>;
  }
  /** Parses Prometheus' text exposition format. */
  export default function parsePrometheusTextFormat(text: string): PrometheusFamily[];
}
