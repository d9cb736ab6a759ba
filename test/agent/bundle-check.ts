import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { checkBundle } from '../../src/pki/bundle';
import { workloadIdentity } from '../../src/pki/identity';

/** What a sidecar mounting `<dir>/<ns>/<sa>` would find wrong, by the one bundle check; [] when the bundle is whole and right. */
export async function bundleProblems(certsDir: string, ns: string, sa: string, rootPem: string, td = 'cluster.local'): Promise<string[]> {
  const dir = path.join(certsDir, ns, sa);
  let chain: string, key: string, root: string;
  try {
    [chain, key, root] = await Promise.all(['cert-chain.pem', 'key.pem', 'root-cert.pem'].map((f) => fs.readFile(path.join(dir, f), 'utf8')));
  } catch (err) {
    return [`${ns}/${sa}: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  if (root !== rootPem) problems.push(`${ns}/${sa}: root-cert.pem is not the CA root`);
  const check = checkBundle({ certChainPem: chain, keyPem: key, rootCertPem: root }, { trustedRootPem: rootPem, expected: workloadIdentity(td, ns, sa), keyLabel: 'key.pem' });
  return [...problems, ...check.problems.map((p) => `${ns}/${sa}: ${p}`)];
}
