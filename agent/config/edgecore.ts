import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { NodeName } from '../../shared/index.js';

// Where KubeEdge's edgecore runs on this node, its config already names the node and the
// EventBus broker: they become defaults under the config file and the environment (loadConfig's
// `defaults`), so a node beside edgecore needs no config of its own.
//
// Keys read (EdgeCoreConfig v1alpha2, pkg/apis/componentconfig/edgecore/v1alpha2/types.go):
//   modules.edged.hostnameOverride            (TailoredKubeletFlag, inlined)  -> node.name
//   modules.eventBus.mqttMode                 0 internal only, 1 both, 2 external only (default 2)
//   modules.eventBus.mqttServerExternal       default tcp://127.0.0.1:1883   -> broker.url (modes 1, 2)
//   modules.eventBus.mqttServerInternal       default tcp://127.0.0.1:1884   -> broker.url (mode 0)
//   modules.eventBus.mqttUsername/mqttPassword                               -> broker.username/password
//   modules.eventBus.eventBusTLS {enable, tlsMqttCAFile, tlsMqttCertFile, tlsMqttPrivateKeyFile} -> broker.tls

export const DEFAULT_EDGECORE_PATH = '/etc/kubeedge/config/edgecore.yaml';
/** The file `modeld run` and `doctor` read: MODELD_EDGECORE (a non-standard install, tests), else the default. */
export const edgecorePath = (): string => process.env.MODELD_EDGECORE || DEFAULT_EDGECORE_PATH;

export interface EdgecoreDetection {
  path: string;
  /** The file exists. */
  found: boolean;
  /** Why the file (or a value in it) was not used; the agent then runs on its own defaults. */
  problems: string[];
  /** The file exists but this user may not read it (EACCES, EPERM): its errno code. */
  unreadable?: string;
  nodeName?: string;
  brokerUrl?: string;
  /** A partial config tree for loadConfig({ defaults }). Empty when nothing was found. */
  defaults: Record<string, unknown>;
}

const BROKER_URL = /^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/;
const MAX_BYTES = 1024 * 1024;

type Tree = Record<string, unknown>;
const obj = (v: unknown): Tree => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Tree) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);

/** Reads edgecore's config if present. Never throws: a bad file is a problem to report, not a reason to stop. */
export function detectEdgecore(path = edgecorePath()): EdgecoreDetection {
  const out: EdgecoreDetection = { path, found: false, problems: [], defaults: {} };
  let text: string;
  try {
    const st = statSync(path);
    out.found = true;
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_BYTES) throw new Error(`larger than ${MAX_BYTES} bytes`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      // stat worked (or the directory is shut): the file is there, this user may not read it.
      out.found = true;
      out.unreadable = code;
    }
    if (code !== 'ENOENT') out.problems.push(`cannot read ${path}: ${(err as Error).message}`);
    return out;
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    out.problems.push(`${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    return out;
  }
  const modules = obj(obj(doc).modules);
  const edged = obj(modules.edged);
  const bus = obj(modules.eventBus);

  const host = str(edged.hostnameOverride);
  if (host !== undefined) {
    if (NodeName.safeParse(host).success) out.nodeName = host;
    else out.problems.push(`${path}: modules.edged.hostnameOverride ${JSON.stringify(host.slice(0, 80))} is not a valid node name; ignored`);
  }

  if (bus.enable !== false && Object.keys(bus).length > 0) {
    const mode = typeof bus.mqttMode === 'number' ? bus.mqttMode : 2;
    const key = mode === 0 ? 'mqttServerInternal' : 'mqttServerExternal';
    const url = str(bus[key]) ?? (mode === 0 ? 'tcp://127.0.0.1:1884' : 'tcp://127.0.0.1:1883');
    if (BROKER_URL.test(url)) out.brokerUrl = url;
    else out.problems.push(`${path}: modules.eventBus.${key} ${JSON.stringify(url.slice(0, 80))} is not a broker URL; ignored`);
  }

  const broker: Tree = {};
  if (out.brokerUrl) broker.url = out.brokerUrl;
  if (out.brokerUrl && str(bus.mqttUsername)) broker.username = str(bus.mqttUsername);
  if (out.brokerUrl && str(bus.mqttPassword)) broker.password = str(bus.mqttPassword);
  const tls = obj(bus.eventBusTLS);
  if (out.brokerUrl && tls.enable === true) {
    broker.tls = Object.fromEntries(
      (
        [
          ['ca', tls.tlsMqttCAFile],
          ['cert', tls.tlsMqttCertFile],
          ['key', tls.tlsMqttPrivateKeyFile],
        ] as const
      ).flatMap(([k, v]) => (str(v) ? [[k, str(v)]] : [])),
    );
    // edgecore speaks TLS on a tcp:// URL when eventBusTLS is on; mqtt.js needs the scheme to say so.
    broker.url = out.brokerUrl.replace(/^(tcp|mqtt):/, 'ssl:');
  }
  if (typeof broker.url === 'string') out.brokerUrl = broker.url;
  if (out.nodeName) out.defaults.node = { name: out.nodeName };
  if (Object.keys(broker).length) out.defaults.broker = broker;
  return out;
}

/** What an unreadable edgecore.yaml means for the node, for `run`'s warning and `doctor`. */
export function unreadableEdgecore(d: EdgecoreDetection, user: string): string {
  return (
    `${user} cannot read ${d.path} (${d.unreadable}): node name and broker come from the config alone, else the hostname and mqtt://127.0.0.1:1883; ` +
    `let ${user} read it (e.g. chgrp modeld ${d.path} && chmod g+r ${d.path}, and its directories passable)`
  );
}
