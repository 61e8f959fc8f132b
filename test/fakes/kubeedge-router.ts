import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';

// A FAKE of KubeEdge's cloudcore Router plus the edgecore eventbus on each node, faithful to
// what the real code does with the two Rules modeld uses:
//
// rest -> eventbus (cloud to node). kubeedge/kubeedge cloud/pkg/router/listener/http.go: the
//   handler for a POST is found by matching the RequestURI against "/<ruleNamespace>/<path>"
//   with utils.IsMatch (cloud/pkg/router/utils/path.go: an UNANCHORED regexp, "{x}" segments as
//   wildcards, "/?" appended); the node is the first URI segment; bodies over 12 MiB are refused.
//   cloud/pkg/router/provider/rest/rest.go Forward: uri = SplitN(RequestURI, "/", 4),
//   param = TrimPrefix(uri[3], path). cloud/pkg/router/provider/eventbus/eventbus.go GoToTarget:
//   resource "node/<node>/" + (param == "" ? topic : TrimSuffix(topic,"/") + "/" + TrimPrefix(param,"/")),
//   operation "publish", body = the POST body as a string, unchanged. edge/pkg/eventbus/eventbus.go
//   publishes that body on that topic (after the node prefix) with QoS 1, not retained.
//   The HTTP answer is 200 "message delivered" as soon as the message is handed to cloudhub,
//   whether or not the node is connected (so a lost message is only noticed by a later sync).
//
// eventbus -> rest (node to cloud). eventbus.go GetSource/RegisterListener: the node subscribes
//   "<ruleNamespace>/<topic>" (exact, one Rule per node via node_name); Forward hands the MQTT
//   payload (message content as a string) to the rest target, whose GoToTarget POSTs it as-is
//   to targetResource.resource: no wrapping, no node header. Empty payloads are not posted.

export interface RestToEventbusRule {
  ruleNamespace: string;
  /** sourceResource.path, e.g. "/ai/inferencemodel" */
  path: string;
  /** targetResource.topic, e.g. "ai/inferencemodel" */
  topic: string;
}

export interface EventbusToRestRule {
  node: string;
  ruleNamespace: string;
  /** sourceResource.topic, e.g. "ai/inferencemodel-status/node-a" */
  topic: string;
  /** targetResource.resource: the URL posted to */
  resource: string;
}

export interface FakeRouterOptions {
  /** node name -> URL of that node's broker */
  nodes: Record<string, string>;
  restRules: RestToEventbusRule[];
  eventbusRules: EventbusToRestRule[];
}

const MAX_MESSAGE_BYTES = 12 * (1 << 20);

const normalize = (p: string) => p.replace(/^\//, '').replace(/\/$/, '');
/** utils.URLToURLRegex + IsMatch: "{param}" -> a segment pattern, "/?" appended, unanchored. */
function isMatch(rule: string, uri: string): boolean {
  const re = rule.replace(/\{[-A-Za-z0-9+&@#%?=~_|!:,.;]+\}/g, '[-A-Za-z0-9+&@#%?=~_|!:,.;]+') + '/?';
  return new RegExp(re).test(uri);
}

export class FakeKubeEdgeRouter {
  private server: Server | undefined;
  private readonly clients = new Map<string, MqttClient>();
  readonly posts: Array<{ uri: string; status: number; topic?: string }> = [];
  readonly forwarded: Array<{ node: string; topic: string; status: number }> = [];
  url = '';

  constructor(private readonly opts: FakeRouterOptions) {}

  async start(): Promise<this> {
    // edgecore's eventbus: one client per node broker, subscribed to the eventbus-source topics.
    await Promise.all(
      Object.entries(this.opts.nodes).map(async ([node, brokerUrl]) => {
        const c = mqtt.connect(brokerUrl, { clientId: `edgecore-eventbus-${node}`, reconnectPeriod: 200 });
        this.clients.set(node, c);
        const subs = this.opts.eventbusRules.filter((r) => r.node === node);
        const topics = subs.map((r) => `${r.ruleNamespace}/${r.topic}`);
        c.on('connect', () => topics.length && c.subscribe(topics, { qos: 1 }));
        c.on('message', (topic, payload) => {
          const rule = subs.find((r) => `${r.ruleNamespace}/${r.topic}` === topic);
          if (!rule || payload.length === 0) return;
          void fetch(rule.resource, { method: 'POST', body: payload })
            .then(async (res) => {
              await res.arrayBuffer();
              this.forwarded.push({ node, topic, status: res.status });
            })
            .catch(() => this.forwarded.push({ node, topic, status: 0 }));
        });
        await new Promise<void>((resolve) => c.once('connect', () => resolve()));
      }),
    );
    this.server = createServer((req, res) => {
      const uri = req.url ?? '/';
      const sections = uri.split('/');
      const reply = (status: number, text: string, topic?: string) => {
        this.posts.push({ uri, status, topic });
        res.writeHead(status).end(text);
      };
      if (sections.length < 2) return reply(404, 'Request error');
      const rule = this.opts.restRules.filter((r) => isMatch(`/${r.ruleNamespace}/${normalize(r.path)}`, uri)).pop();
      if (!rule) return reply(404, 'Request error');
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_MESSAGE_BYTES) chunks.push(c);
      });
      req.on('end', () => {
        if (size > MAX_MESSAGE_BYTES) return reply(400, 'Request error,body is null');
        const node = sections[1];
        const parts = uri.split('/');
        const uri3 = parts.slice(3).join('/'); // SplitN(uri, "/", 4)[3]
        const param = uri3.startsWith(normalize(rule.path)) ? uri3.slice(normalize(rule.path).length) : uri3;
        const topic = param === '' ? rule.topic : `${rule.topic.replace(/\/$/, '')}/${param.replace(/^\//, '')}`;
        const client = this.clients.get(node);
        // cloudhub drops it for a node that is not connected; the caller still hears 200.
        if (client?.connected) client.publish(topic, Buffer.concat(chunks), { qos: 1 });
        reply(200, 'message delivered', topic);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.endAsync(true)));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }
}
