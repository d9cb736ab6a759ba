import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isJsonObject, type JsonObject, type JsonValue } from '../common/json';
import { isMarathonName } from './pod';

/**
 * The sidecar template (like Istio's injector ConfigMap): JSON holding the `containers` and
 * `volumes` to add to a pod, with `{{placeholder}}`s. A string that is exactly one placeholder
 * takes the value's JSON type (number, boolean); a null value removes the key; a placeholder
 * inside a longer string is replaced by the value's text.
 */
export interface SidecarTemplate {
  /** sha256 of the template's canonical JSON: recorded in sidecar.istio.io/status, so a changed template upgrades */
  sha256: string;
  source: string;
  containers: JsonObject[];
  volumes: JsonObject[];
}

/** The values a template can use, one per placeholder. */
export interface TemplateValues {
  image: string;
  proxyCPU: number;
  proxyMemory: number;
  /** redirect capture runs the iptables script as root; explicit capture leaves the user to the pod (null) */
  proxyUser: string | null;
  /** the sidecar's shell command: capture setup (redirect) and Envoy with its bootstrap inline */
  proxyCommand: string;
  marathonId: string;
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  xdsAddress: string;
  certMode: string;
  capture: string;
  /** the identity's directory on the host (`<sds-dir>/<ns>/<sa>` or `<certs-dir>/<ns>/<sa>`) */
  certHostPath: string;
  /** where the sidecar sees it (/var/run/secrets/workload-spiffe-uds or /etc/certs) */
  certMountPath: string;
  certReadOnly: boolean;
  adminPort: number;
}

export const TEMPLATE_PLACEHOLDERS: ReadonlyArray<keyof TemplateValues> = [
  'image', 'proxyCPU', 'proxyMemory', 'proxyUser', 'proxyCommand', 'marathonId', 'spiffeId', 'namespace', 'serviceAccount',
  'trustDomain', 'xdsAddress', 'certMode', 'capture', 'certHostPath', 'certMountPath', 'certReadOnly', 'adminPort',
];

const PLACEHOLDER = /\{\{\s*([A-Za-z]+)\s*\}\}/g;
const WHOLE = /^\{\{\s*([A-Za-z]+)\s*\}\}$/;

/** The template shipped with the package (dist/src/inject/templates/sidecar.json). */
export const DEFAULT_TEMPLATE_FILE = path.join(__dirname, 'templates', 'sidecar.json');

let defaultTemplate: SidecarTemplate | undefined;

export function defaultSidecarTemplate(): SidecarTemplate {
  defaultTemplate ??= parseSidecarTemplate(readFileSync(DEFAULT_TEMPLATE_FILE, 'utf8'), DEFAULT_TEMPLATE_FILE);
  return defaultTemplate;
}

/** Parses and checks a template; the error names `source` and the JSON path of the problem. */
export function parseSidecarTemplate(text: string, source: string): SidecarTemplate {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not JSON (${(err as Error).message})`);
  }
  const fail = (at: string, what: string): never => {
    throw new Error(`${source}: ${at}: ${what}`);
  };
  if (!isJsonObject(json)) return fail('/', 'a template is an object with "containers" and "volumes"');
  for (const k of Object.keys(json)) if (k !== 'containers' && k !== 'volumes') fail(`/${k}`, 'unknown key (a template has "containers" and "volumes")');
  const list = (key: string): JsonObject[] => {
    const v = json[key] ?? [];
    if (!Array.isArray(v)) return fail(`/${key}`, 'expected an array');
    return v.map((item, i) => (isJsonObject(item) ? item : fail(`/${key}(${i})`, 'expected an object')));
  };
  const containers = list('containers');
  const volumes = list('volumes');
  if (containers.length === 0) fail('/containers', 'a template adds at least one container');
  const names = (items: JsonObject[], key: string) =>
    items.forEach((item, i) => {
      const name = item.name;
      if (typeof name !== 'string' || !isMarathonName(name)) {
        fail(`/${key}(${i})/name`, 'must be a Marathon name ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters), without placeholders');
      }
    });
  names(containers, 'containers');
  names(volumes, 'volumes');
  checkPlaceholders(json, '', fail);
  return { sha256: createHash('sha256').update(JSON.stringify(json)).digest('hex'), source, containers, volumes };
}

function checkPlaceholders(v: JsonValue, at: string, fail: (at: string, what: string) => never): void {
  if (typeof v === 'string') {
    for (const m of v.matchAll(PLACEHOLDER)) {
      if (!(TEMPLATE_PLACEHOLDERS as readonly string[]).includes(m[1])) fail(at || '/', `unknown placeholder {{${m[1]}}} (known: ${TEMPLATE_PLACEHOLDERS.join(', ')})`);
    }
    const rest = v.replace(PLACEHOLDER, '');
    if (rest.includes('{{') || rest.includes('}}')) fail(at || '/', `malformed placeholder in ${JSON.stringify(v)} (write {{name}})`);
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => checkPlaceholders(x, `${at}(${i})`, fail));
  } else if (isJsonObject(v)) {
    for (const [k, x] of Object.entries(v)) checkPlaceholders(x, `${at}/${k}`, fail);
  }
}

/** The containers and volumes of `template` with `values` filled in. */
export function renderSidecar(template: SidecarTemplate, values: TemplateValues): { containers: JsonObject[]; volumes: JsonObject[] } {
  return {
    containers: template.containers.map((c) => fill(c, values) as JsonObject),
    volumes: template.volumes.map((v) => fill(v, values) as JsonObject),
  };
}

function fill(v: JsonValue, values: TemplateValues): JsonValue | undefined {
  if (typeof v === 'string') {
    const whole = WHOLE.exec(v);
    if (whole) {
      const value = values[whole[1] as keyof TemplateValues];
      return value === null ? undefined : value;
    }
    return v.replace(PLACEHOLDER, (_, name: string) => String(values[name as keyof TemplateValues] ?? ''));
  }
  if (Array.isArray(v)) return v.map((x) => fill(x, values)).filter((x): x is JsonValue => x !== undefined);
  if (isJsonObject(v)) {
    const out: JsonObject = {};
    for (const [k, x] of Object.entries(v)) {
      const filled = fill(x, values);
      if (filled !== undefined) out[k] = filled;
    }
    return out;
  }
  return v;
}
