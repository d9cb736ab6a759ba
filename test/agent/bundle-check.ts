import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { privateKeyFromPem } from '../../src/pki/keys';
import { identityOfCertificate, keyMatchesCertificate, verifyChain } from '../../src/pki/verify';
import { spiffeId } from '../../src/pki/identity';

/** What a sidecar mounting `<dir>/<ns>/<sa>` would find wrong; [] when the bundle is whole and right. */
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
  const check = verifyChain(chain, rootPem);
  if (!check.ok || !check.leaf) return [...problems, `${ns}/${sa}: ${check.problems.join('; ')}`];
  const id = spiffeId(identityOfCertificate(check.leaf));
  if (id !== `spiffe://${td}/ns/${ns}/sa/${sa}`) problems.push(`${ns}/${sa}: certificate is for ${id}`);
  try {
    if (!keyMatchesCertificate(privateKeyFromPem(key), check.leaf)) problems.push(`${ns}/${sa}: key.pem does not match cert-chain.pem`);
  } catch (err) {
    problems.push(`${ns}/${sa}: ${(err as Error).message}`);
  }
  return problems;
}
