// Validate custom resources against their CRD's OpenAPI schema (types, enums,
// patterns, required fields), with @kubernetes-models' validators compiled
// from the Prometheus Operator's CRDs. Reads a JSON array of resources on
// stdin; prints a JSON array, one entry per resource: {kind, name, error}
// (error null when valid). A kind it has no schema for is an error, never a pass.
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const KINDS = { "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor };

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((doc) => {
  const kind = `${doc.apiVersion}/${doc.kind}`;
  const name = doc.metadata?.name ?? null;
  const Model = KINDS[kind];
  if (!Model) return { kind, name, error: `no schema for ${kind}` };
  try {
    new Model(doc).validate();
    return { kind, name, error: null };
  } catch (e) {
    return { kind, name, error: e.message };
  }
});
process.stdout.write(JSON.stringify(results));
