import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { checkBundle } from '../../src/pki/bundle';
import { workloadIdentity } from '../../src/pki/identity';

/**
 * What a sidecar mounting `<dir>/<ns>/<sa>` would find wrong, by the one bundle check; [] when the
 * bundle is whole and right, and the Envoy SDS files beside it (what a files-mode bootstrap's
 * xDS connection reads) hold the very same certificate, key and root.
 */
export async function bundleProblems(certsDir: string, ns: string, sa: string, rootPem: string, td = 'cluster.local'): Promise<string[]> {
  const dir = path.join(certsDir, ns, sa);
  let chain: string, key: string, root: string, sdsCert: string, sdsRoot: string;
  try {
    [chain, key, root, sdsCert, sdsRoot] = await Promise.all(['cert-chain.pem', 'key.pem', 'root-cert.pem', 'envoy-sds-cert.json', 'envoy-sds-root.json'].map((f) => fs.readFile(path.join(dir, f), 'utf8')));
  } catch (err) {
    return [`${ns}/${sa}: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  if (root !== rootPem) problems.push(`${ns}/${sa}: root-cert.pem is not the CA root`);
  const secret = (text: string) => (JSON.parse(text) as { resources: Array<{ tls_certificate?: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } }; validation_context?: { trusted_ca: { inline_string: string } } }> }).resources[0];
  const c = secret(sdsCert).tls_certificate;
  if (c?.certificate_chain.inline_string !== chain || c?.private_key.inline_string !== key) problems.push(`${ns}/${sa}: envoy-sds-cert.json is not cert-chain.pem and key.pem`);
  if (secret(sdsRoot).validation_context?.trusted_ca.inline_string !== root) problems.push(`${ns}/${sa}: envoy-sds-root.json is not root-cert.pem`);
  const check = checkBundle({ certChainPem: chain, keyPem: key, rootCertPem: root }, { trustedRootPem: rootPem, expected: workloadIdentity(td, ns, sa), keyLabel: 'key.pem' });
  return [...problems, ...check.problems.map((p) => `${ns}/${sa}: ${p}`)];
}
