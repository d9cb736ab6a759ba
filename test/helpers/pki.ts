import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CertificateAuthority, createSelfSignedRoot } from '../../src/ca/authority';
import { CaConfig, DEFAULT_CA_CONFIG } from '../../src/ca/config';
import { workloadIdentity } from '../../src/pki/identity';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const cliPath = path.join(repoRoot, 'bin', 'citadel');

export function tempDir(prefix = 'citadel-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** An in-memory self-signed CA for tests that need certificates but not a store. */
export function testCa(overrides: Partial<CaConfig> = {}): CertificateAuthority {
  const config = { ...DEFAULT_CA_CONFIG, ...overrides };
  return CertificateAuthority.fromSecret(createSelfSignedRoot(config), config);
}

export function bundleFor(ca: CertificateAuthority, ns: string, sa: string, ttlMs?: number) {
  return ca.issueKeyCertBundle(workloadIdentity(ca.trustDomain, ns, sa), ttlMs);
}
