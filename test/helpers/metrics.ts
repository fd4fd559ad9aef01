// Reading a running gateway's Prometheus metrics from its admin port.
import type { RunningGateway } from './gateway.ts';

/** Sum of the samples of `name` on the gateway's admin /metrics whose labels include all of `labels`. */
export async function metricSum(gw: RunningGateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const base = gw.admin.startsWith('http') ? gw.admin : `http://${gw.admin}`;
  const text = await (await fetch(`${base}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if ((line.startsWith(name + '{') || line.startsWith(name + ' ')) && wanted.every((w) => line.includes(w))) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}
