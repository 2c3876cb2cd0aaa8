/** Prometheus text exposition (format 0.0.4) served over node:http: the metric families, escaped, on GET /metrics. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  /** snake_case with the unit last (`_seconds`, `_total` for counters). */
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: Sample[];
}

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Label values: backslash, double quote and newline escaped, as the format says. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

export function formatExposition(families: MetricFamily[]): string {
  const out: string[] = [];
  for (const family of families) {
    out.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      const labels = Object.entries(sample.labels ?? {});
      const labelText = labels.length === 0 ? '' : `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
      out.push(`${family.name}${labelText} ${formatValue(sample.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

export interface MetricsServer {
  /** host:port actually bound (port 0 gets one from the OS). */
  address: string;
  close(): Promise<void>;
}

/** Serves render() on GET /metrics (and /); anything else is a 404. */
export function serveMetrics(host: string, port: number, render: () => MetricFamily[]): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics' && path !== '/') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at /metrics\n');
      return;
    }
    const body = formatExposition(render());
    res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({
        address: `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
