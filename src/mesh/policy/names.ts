/** The naming rules policy fields obey (Kubernetes metadata, Marathon ids, DNS hosts); each returns a problem or undefined. */
import { quote } from './quote';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** A Marathon path segment (shared/marathon/API-NOTES.md), without the relative `.` and `..`. */
const MARATHON_SEGMENT = /^(([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))$/;

function isDnsSubdomain(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => l.length <= 63 && DNS_LABEL.test(l));
}

/** metadata.name: a DNS-1123 subdomain, as Kubernetes requires of custom resources. */
export function checkObjectName(name: string): string | undefined {
  if (isDnsSubdomain(name)) return undefined;
  return `${quote(name)} must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)`;
}

/** A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters. */
export function checkLabelKey(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if ((prefix === undefined || isDnsSubdomain(prefix)) && name.length <= 63 && LABEL_NAME.test(name)) return undefined;
  return `key ${quote(key)} must be [prefix/]name, name at most 63 letters, digits, '-', '_' or '.' (starting and ending alphanumeric), prefix a DNS subdomain`;
}

export function checkLabelValue(value: string): string | undefined {
  if (value === '' || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return `${quote(value)} must be empty or at most 63 letters, digits, '-', '_' or '.' (starting and ending alphanumeric)`;
}

export function isMarathonId(id: string): boolean {
  if (!id.startsWith('/') || id.length < 2) return false;
  return id.slice(1).split('/').every((s) => MARATHON_SEGMENT.test(s));
}

function isDnsName(name: string): boolean {
  return isDnsSubdomain(name);
}

/** A Policy target: a Marathon app or pod id, or its Mesos-DNS name. */
export function checkServiceName(name: string): string | undefined {
  if (isMarathonId(name) || isDnsName(name)) return undefined;
  return `${quote(name)} is neither a Marathon id (/prod/payments/api) nor a DNS name (api-payments-prod.marathon.mesos)`;
}

/** A DestinationRule host: a service name as above, `*.suffix`, or `*`. */
export function checkHost(host: string): string | undefined {
  if (host === '*' || isMarathonId(host) || isDnsName(host)) return undefined;
  if (host.startsWith('*.') && isDnsName(host.slice(2))) return undefined;
  return `${quote(host)} is neither a Marathon id (/prod/payments/api), a DNS name (api-payments-prod.marathon.mesos) nor a wildcard (*.marathon.mesos, *)`;
}

/** A port name as Marathon portDefinitions and pod endpoints carry it. */
export function checkPortName(name: string): string | undefined {
  if (name.length > 0 && name.length <= 63 && /^[A-Za-z0-9][-A-Za-z0-9_.]*$/.test(name)) return undefined;
  return `${quote(name)} is not a port name (letters, digits, '-', '_' and '.', at most 63 characters)`;
}

/** Milliseconds since the epoch of an RFC 3339 timestamp, or undefined when it is not one. */
export function parseTimestamp(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const fraction = m[7] === undefined ? 0 : Math.floor(Number(`0${m[7]}`) * 1000);
  const offsetMinutes = m[9] === undefined ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
  const daysInMonth = new Date(utc(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return undefined;
  if (m[9] !== undefined && (Number(m[10]) > 23 || Number(m[11]) > 59)) return undefined;
  return utc(year, month - 1, day, hour, minute, second, fraction) - offsetMinutes * 60_000;
}

/** Date.UTC without its mapping of years 0-99 to 1900-1999. */
function utc(year: number, monthIndex: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, monthIndex, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime();
}

export function checkTimestamp(text: string): string | undefined {
  if (parseTimestamp(text) !== undefined) return undefined;
  return `${quote(text)} is not an RFC 3339 timestamp (2024-05-01T12:00:00Z)`;
}
