import type { JsonObject } from '../common/json';

/** One shell word, whatever it holds. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Instance IP and id for node.id, read at start (sidecar contract): the Mesos container IP and
 * task id, else loopback and the hostname.
 */
const INSTANCE_PRELUDE =
  'INSTANCE_IP="${INSTANCE_IP:-${MESOS_CONTAINER_IP:-127.0.0.1}}"; INSTANCE_ID="${INSTANCE_ID:-${MESOS_TASK_ID:-$(hostname)}}"; ';

/** Envoy with its bootstrap inline, so nothing but the certificate directory has to exist on the host. */
export function envoyArgv(bootstrap: JsonObject): string {
  // JSON is YAML, and one line of it survives Marathon, Mesos and sh unchanged
  return `envoy --config-yaml ${shellQuote(JSON.stringify(bootstrap))} --service-node "sidecar~\${INSTANCE_IP}~\${INSTANCE_ID}" --disable-hot-restart`;
}

/**
 * The sidecar's shell command (pod `exec.command.shell`). explicit: exec Envoy. redirect: exec
 * the capture script (embedded, so the image needs only sh and iptables) with its arguments,
 * which installs the rules and then execs Envoy as uid 1337. Both end with Envoy's arguments,
 * so a template may append more (`{{proxyCommand}} --concurrency 2`).
 */
export function proxyCommand(bootstrap: JsonObject, capture: { script: string; args: string[] } | undefined): string {
  const envoy = envoyArgv(bootstrap);
  if (!capture) return `${INSTANCE_PRELUDE}exec ${envoy}`;
  return `${INSTANCE_PRELUDE}exec sh -c ${shellQuote(capture.script)} citadel-iptables ${capture.args.map(shellQuote).join(' ')} -- ${envoy}`;
}
