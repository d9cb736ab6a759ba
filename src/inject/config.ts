import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  CAPTURE_MODES, CERT_MODES, DEFAULT_ADMIN_PORT, DEFAULT_CERTS_DIR, DEFAULT_SDS_DIR, DEFAULT_XDS_ADDRESS, MESOS_AGENT_PORT,
  type CaptureMode, type CertMode,
} from '../mesh/bootstrap/contract';
import { parseHostPort, type HostPort } from '../mesh/bootstrap/host-port';
import { isJsonObject, type JsonValue } from '../common/json';
import { checkNamespace, checkTrustDomain } from '../pki/identity';
import { defaultSidecarTemplate, type SidecarTemplate } from './template';

/** How a namespace's workloads get their sidecar; every field can be set per namespace in the inject config. */
export interface SidecarSettings {
  /** inject when the workload's label sidecar.istio.io/inject says nothing */
  inject: boolean;
  certMode: CertMode;
  capture: CaptureMode;
  image: string;
  /** the node agent's directories on the host */
  sdsDir: string;
  certsDir: string;
  /** files mode: where the sidecar's xDS stream goes */
  xdsAddress: HostPort;
  proxyCpu: number;
  proxyMemory: number;
  adminPort: number;
  /** redirect capture never redirects these ports, in or out: the Mesos agent and citadel's own ports */
  excludePorts: number[];
}

export const DEFAULT_PROXY_IMAGE = 'docker.io/envoyproxy/envoy:v1.40.0';

export const DEFAULT_SIDECAR_SETTINGS: Readonly<SidecarSettings> = Object.freeze({
  inject: false,
  certMode: 'sds',
  capture: 'explicit',
  image: DEFAULT_PROXY_IMAGE,
  sdsDir: DEFAULT_SDS_DIR,
  certsDir: DEFAULT_CERTS_DIR,
  xdsAddress: parseHostPort(DEFAULT_XDS_ADDRESS, 'xdsAddress'),
  proxyCpu: 0.1,
  proxyMemory: 128,
  adminPort: DEFAULT_ADMIN_PORT,
  // the Mesos agent, citadel's CA (gRPC), xDS and monitoring ports
  excludePorts: [MESOS_AGENT_PORT, 8060, 15012, 15014],
});

/** The injector's whole configuration, resolved once and shared by every inject() call. */
export interface InjectConfig {
  trustDomain: string;
  /** built-in defaults overlaid with the inject config file's top level */
  defaults: SidecarSettings;
  /** per-namespace entries of the inject config file */
  namespaces: Readonly<Record<string, Partial<SidecarSettings>>>;
  /** command-line flags: they win over the file, namespace entries included */
  overrides: Partial<SidecarSettings>;
  template: SidecarTemplate;
  captureScript: string;
}

/** What an inject config file holds (JSON; YAML when the `yaml` package is installed). */
export interface InjectConfigFile {
  trustDomain?: string;
  defaults: Partial<SidecarSettings>;
  namespaces: Record<string, Partial<SidecarSettings>>;
}

/** The capture script shipped with the package (dist/src/inject/capture/citadel-iptables.sh). */
export const CAPTURE_SCRIPT_FILE = path.join(__dirname, 'capture', 'citadel-iptables.sh');
let captureScript: string | undefined;

export function defaultCaptureScript(): string {
  captureScript ??= readFileSync(CAPTURE_SCRIPT_FILE, 'utf8');
  return captureScript;
}

export function injectConfig(opts: {
  file?: InjectConfigFile;
  overrides?: Partial<SidecarSettings>;
  trustDomain?: string;
  template?: SidecarTemplate;
  captureScript?: string;
} = {}): InjectConfig {
  const trustDomain = opts.trustDomain ?? opts.file?.trustDomain ?? 'cluster.local';
  const problem = checkTrustDomain(trustDomain);
  if (problem) throw new Error(`trust domain: ${problem}`);
  return {
    trustDomain,
    defaults: { ...DEFAULT_SIDECAR_SETTINGS, ...opts.file?.defaults },
    namespaces: opts.file?.namespaces ?? {},
    overrides: opts.overrides ?? {},
    template: opts.template ?? defaultSidecarTemplate(),
    captureScript: opts.captureScript ?? defaultCaptureScript(),
  };
}

/** The settings for workloads of `namespace`: flags, then the namespace's entry, then the file's top level, then the defaults. */
export function settingsFor(config: InjectConfig, namespace: string): SidecarSettings {
  return { ...config.defaults, ...config.namespaces[namespace], ...config.overrides };
}

// --- the file ---------------------------------------------------------------------------------

const SETTING_KEYS: Record<string, (v: JsonValue, at: string) => Partial<SidecarSettings>> = {
  inject: (v, at) => ({ inject: bool(v, at) }),
  mode: (v, at) => ({ certMode: oneOf(v, at, CERT_MODES) }),
  capture: (v, at) => ({ capture: oneOf(v, at, CAPTURE_MODES) }),
  image: (v, at) => ({ image: nonEmpty(v, at) }),
  sdsDir: (v, at) => ({ sdsDir: absolutePath(v, at) }),
  certsDir: (v, at) => ({ certsDir: absolutePath(v, at) }),
  xdsAddress: (v, at) => ({ xdsAddress: parseHostPort(nonEmpty(v, at), at) }),
  proxyCPU: (v, at) => ({ proxyCpu: positive(v, at) }),
  proxyMemory: (v, at) => ({ proxyMemory: positive(v, at) }),
  adminPort: (v, at) => ({ adminPort: port(v, at) }),
  excludePorts: (v, at) => ({ excludePorts: ports(v, at) }),
};

/**
 * Parses an inject config:
 *   { "trustDomain": "...", <settings>, "namespaces": { "<ns>": { <settings> } } }
 * where <settings> are inject, mode, capture, image, sdsDir, certsDir, xdsAddress, proxyCPU,
 * proxyMemory, adminPort, excludePorts. Unknown keys are errors (a typo must not pass silently).
 */
export function parseInjectConfigFile(text: string, source: string): InjectConfigFile {
  const json = parseConfigText(text, source);
  const fail = (at: string, what: string): never => {
    throw new Error(`${source}: ${at}: ${what}`);
  };
  if (!isJsonObject(json)) return fail('/', 'expected an object');
  const file: InjectConfigFile = { defaults: {}, namespaces: {} };
  try {
    for (const [key, v] of Object.entries(json)) {
      if (key === 'trustDomain') {
        const td = nonEmpty(v, '/trustDomain');
        const problem = checkTrustDomain(td);
        if (problem) fail('/trustDomain', problem);
        file.trustDomain = td;
      } else if (key === 'namespaces') {
        if (!isJsonObject(v)) fail('/namespaces', 'expected an object of namespace -> settings');
        for (const [ns, entry] of Object.entries(v as Record<string, JsonValue>)) {
          const problem = checkNamespace(ns);
          if (problem) fail(`/namespaces/${ns}`, problem);
          file.namespaces[ns] = settings(entry, `/namespaces/${ns}`);
        }
      } else if (SETTING_KEYS[key]) {
        Object.assign(file.defaults, SETTING_KEYS[key](v, `/${key}`));
      } else {
        fail(`/${key}`, `unknown key (known: trustDomain, namespaces, ${Object.keys(SETTING_KEYS).join(', ')})`);
      }
    }
  } catch (err) {
    const message = (err as Error).message;
    throw new Error(message.startsWith(`${source}:`) ? message : `${source}: ${message}`);
  }
  return file;
}

function settings(v: JsonValue, at: string): Partial<SidecarSettings> {
  if (!isJsonObject(v)) throw new Error(`${at}: expected an object of settings`);
  const out: Partial<SidecarSettings> = {};
  for (const [key, x] of Object.entries(v)) {
    const read = SETTING_KEYS[key];
    if (!read) throw new Error(`${at}/${key}: unknown setting (known: ${Object.keys(SETTING_KEYS).join(', ')})`);
    Object.assign(out, read(x, `${at}/${key}`));
  }
  return out;
}

/** A config file's text as JSON, or as YAML when its name ends in .yaml/.yml (the inject config, the admission proxy's namespace map). */
export function parseConfigText(text: string, source: string): JsonValue {
  return /\.ya?ml$/i.test(source) ? parseYaml(text, source) : parseJson(text, source);
}

function parseJson(text: string, source: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new Error(`${source}: not JSON (${(err as Error).message}); YAML needs a .yaml or .yml name`);
  }
}

function parseYaml(text: string, source: string): JsonValue {
  let yaml: { parse(text: string): unknown };
  try {
    yaml = require('yaml') as { parse(text: string): unknown };
  } catch {
    throw new Error(`${source}: YAML needs the "yaml" package, which is not installed; write the inject config as JSON`);
  }
  try {
    return yaml.parse(text) as JsonValue;
  } catch (err) {
    throw new Error(`${source}: not YAML (${(err as Error).message.split('\n')[0]})`);
  }
}

function bool(v: JsonValue, at: string): boolean {
  if (typeof v !== 'boolean') throw new Error(`${at}: expected true or false`);
  return v;
}
function nonEmpty(v: JsonValue, at: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new Error(`${at}: expected a non-empty string`);
  return v;
}
function absolutePath(v: JsonValue, at: string): string {
  const s = nonEmpty(v, at);
  if (!s.startsWith('/')) throw new Error(`${at}: "${s}" must be an absolute path`);
  return s;
}
function oneOf<T extends string>(v: JsonValue, at: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw new Error(`${at}: expected one of ${values.join(', ')}`);
  return v as T;
}
function positive(v: JsonValue, at: string): number {
  if (typeof v !== 'number' || !(v > 0)) throw new Error(`${at}: expected a positive number`);
  return v;
}
function port(v: JsonValue, at: string): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) throw new Error(`${at}: expected a port (1-65535)`);
  return v as number;
}
function ports(v: JsonValue, at: string): number[] {
  if (!Array.isArray(v)) throw new Error(`${at}: expected an array of ports`);
  return v.map((p, i) => port(p, `${at}(${i})`));
}
