import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../common/atomic-file';
import { parseCertificatePem } from '../pki/certificate';
import { spiffeId, NodeIdentity } from '../pki/identity';
import { privateKeyFromPem } from '../pki/keys';
import { parsePemBlocks, splitCertificates, toPem } from '../pki/pem';
import { identityOfCertificate, keyMatchesCertificate, verifyChain } from '../pki/verify';

/** The node's own key and certificate (spiffe://<td>/mesos-agent/<host>). */
export interface NodeCredential {
  keyPem: string;
  /** Leaf, then intermediates (not the root). */
  certChainPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** Builds a credential from the CA's answer (leaf first, root last), checking it against our root and identity. */
export function credentialFromChain(keyPem: string, chain: string[], rootPem: string, expected: NodeIdentity): NodeCredential {
  const root = splitCertificates(rootPem)[0];
  const certs = chain.flatMap((c) => splitCertificates(c)).filter((c) => c !== root);
  return checkCredential(keyPem, certs.join(''), rootPem, expected);
}

export function checkCredential(keyPem: string, certChainPem: string, rootPem: string, expected: NodeIdentity, now = new Date()): NodeCredential {
  const check = verifyChain(certChainPem, rootPem, now);
  if (!check.ok || !check.leaf) throw new Error(`the node certificate does not verify against --ca-root: ${check.problems.join('; ')}`);
  const id = spiffeId(identityOfCertificate(check.leaf));
  if (id !== spiffeId(expected)) throw new Error(`the node certificate is for ${id}, not ${spiffeId(expected)}`);
  if (!keyMatchesCertificate(privateKeyFromPem(keyPem, 'node key'), check.leaf)) throw new Error('the node key does not match the node certificate');
  return { keyPem, certChainPem, notBefore: check.leaf.notBefore, notAfter: check.leaf.notAfter };
}

/** `<state-dir>/node.pem`: key and chain in one file, replaced by rename so they never disagree. */
export class NodeCredentialFile {
  readonly file: string;
  constructor(readonly dir: string) {
    this.file = path.join(dir, 'node.pem');
  }

  /** The saved credential if it is still valid for `expected` under `rootPem`; undefined otherwise. */
  async load(rootPem: string, expected: NodeIdentity): Promise<{ credential?: NodeCredential; problem?: string }> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
    try {
      const blocks = parsePemBlocks(text);
      const key = blocks.find((b) => b.label.endsWith('PRIVATE KEY'));
      if (!key) throw new Error('no private key in it');
      const chain = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => toPem('CERTIFICATE', b.der)).join('');
      parseCertificatePem(splitCertificates(chain)[0] ?? '');
      return { credential: checkCredential(toPem(key.label, key.der), chain, rootPem, expected) };
    } catch (err) {
      return { problem: `${this.file}: ${(err as Error).message}` };
    }
  }

  async save(c: NodeCredential): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, c.keyPem + c.certChainPem, 0o600);
  }
}
