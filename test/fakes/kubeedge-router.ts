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
//   The HTTP answer is 200 "message delivered" once the message is handed to cloudhub for a node
//   cloudcore has a session with. For a node with NO session: rest.go Forward turns the target's
//   error ("cloudcore doesn't have session for node:<node>", the session check of
//   cloud/pkg/router/provider/servicebus/servicebus.go at 044d5fc, which the eventbus target makes
//   too in the version read) into a 500, and cloud/pkg/router/listener/http.go (kubeedge master at
//   d062d29, per kubeedge/kubeedge#7325) wraps the whole handler in retry.Do with 3 attempts: any
//   non-200 answer is retried, a second apart, and the caller finally gets 500 with the body
//   "All attempts fail:\n#1: ...\n#2: ...\n#3: ...". (Older releases, e.g. eventbus.go at 617785b,
//   answered 200 and dropped the message; `noSessionAnswer: 'ok'` plays those.)
//   user-group messages are NO-ACK in cloudhub (cloud/pkg/cloudhub/dispatcher/message_dispatcher.go
//   noAckRequired: msg.GetGroup() == UserGroup): a message to a node whose session drops on the
//   way is lost, never resent by cloudhub.
//
// eventbus -> rest (node to cloud). eventbus.go GetSource/RegisterListener: the node subscribes
//   "<ruleNamespace>/<topic>" (exact, one Rule per node via node_name); Forward hands the MQTT
//   payload (message content as a string) to the rest target, whose GoToTarget POSTs it as-is
//   to targetResource.resource: no wrapping, no node header. Empty payloads are not posted.
//   A failed POST (the receiver down, any error) is logged by rule.go and dropped: no retry.
//
// Test controls (not KubeEdge behaviour): `drop` loses a message in either direction (as a
// flaky cloud-edge link or a cloudcore restart would) and `delayMs` holds it back.

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
  /** What a POST for a node without a session gets: the real retry-then-500 (default) or 200 (old releases). */
  noSessionAnswer?: '500' | 'ok';
  /** The pause between the handler's tries (retry.Do in http.go); 1000 ms as in KubeEdge. */
  retryIntervalMs?: number;
  /** Test control: true loses this message ('down': cloud to node, 'up': node to cloud). */
  drop?: (m: { direction: 'down' | 'up'; node: string; topic: string; payload: Buffer }) => boolean;
  /** Test control: hold each message back this long (ms) before passing it on. */
  delayMs?: number | ((m: { direction: 'down' | 'up'; node: string; topic: string }) => number);
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
  readonly posts: Array<{ uri: string; status: number; topic?: string; text: string; ms: number }> = [];
  readonly forwarded: Array<{ node: string; topic: string; status: number }> = [];
  /** Messages the test's `drop` lost, by direction. */
  readonly dropped = { down: 0, up: 0 };
  /** Nodes cut off on purpose: cloudcore has no session for them (edgecore offline). */
  readonly offline = new Set<string>();
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
        c.on('message', async (topic, payload) => {
          const rule = subs.find((r) => `${r.ruleNamespace}/${r.topic}` === topic);
          if (!rule || payload.length === 0 || this.offline.has(node)) return;
          const m = { direction: 'up' as const, node, topic };
          if (this.opts.drop?.({ ...m, payload })) return void this.dropped.up++;
          await this.hold(m);
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
      const t0 = performance.now();
      const reply = (status: number, text: string, topic?: string) => {
        this.posts.push({ uri, status, topic, text, ms: performance.now() - t0 });
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
      req.on('end', async () => {
        if (size > MAX_MESSAGE_BYTES) return reply(400, 'Request error,body is null');
        const node = sections[1];
        const parts = uri.split('/');
        const uri3 = parts.slice(3).join('/'); // SplitN(uri, "/", 4)[3]
        const param = uri3.startsWith(normalize(rule.path)) ? uri3.slice(normalize(rule.path).length) : uri3;
        const topic = param === '' ? rule.topic : `${rule.topic.replace(/\/$/, '')}/${param.replace(/^\//, '')}`;
        const body = Buffer.concat(chunks);
        // retry.Do(3 attempts, 1 s apart) around the rule handler: each try checks the session anew.
        const errors: string[] = [];
        for (let attempt = 1; attempt <= 3; attempt++) {
          const client = this.clients.get(node);
          if (client?.connected && !this.offline.has(node)) {
            const m = { direction: 'down' as const, node, topic };
            if (this.opts.drop?.({ ...m, payload: body })) this.dropped.down++;
            else void this.hold(m).then(() => client.publish(topic, body, { qos: 1 }));
            return reply(200, 'message delivered', topic);
          }
          if (this.opts.noSessionAnswer === 'ok') return reply(200, 'message delivered', topic);
          errors.push(`#${attempt}: cloudcore doesn't have session for node:${node}`);
          if (attempt < 3) await new Promise((r) => setTimeout(r, this.opts.retryIntervalMs ?? 1000));
        }
        reply(500, `All attempts fail:\n${errors.join('\n')}`, topic);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Whether the node's edgecore (its eventbus client) is connected (tests wait for it). */
  nodeConnected(node: string): boolean {
    return this.clients.get(node)?.connected === true;
  }

  private async hold(m: { direction: 'down' | 'up'; node: string; topic: string }): Promise<void> {
    const d = typeof this.opts.delayMs === 'function' ? this.opts.delayMs(m) : (this.opts.delayMs ?? 0);
    if (d > 0) await new Promise((r) => setTimeout(r, d));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.endAsync(true)));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }
}
