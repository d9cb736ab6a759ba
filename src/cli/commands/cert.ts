import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { CertificateAuthority } from '../../ca/authority';
import { writeFileAtomic } from '../../common/atomic-file';
import { formatDuration, parseDuration } from '../../common/duration';
import { UserError } from '../../common/errors';
import { parseCertificatePem, ParsedCertificate } from '../../pki/certificate';
import { CITADEL_FILES, spiffeId, workloadIdentity } from '../../pki/identity';
import { describeKey, publicKeyFromSpki } from '../../pki/keys';
import { splitCertificates } from '../../pki/pem';
import { checkBundle } from '../../pki/bundle';
import { identityOfCertificate } from '../../pki/verify';
import { ENVOY_SDS_FILES } from '../../mesh/bootstrap/contract';
import { envoySdsFiles } from '../../mesh/bootstrap/sds-files';
import { addCaOptions, addOutputOption, addStoreOption, caConfigFromFlags, CaFlagValues, openStoreFromFlags, wantsJson } from '../options';
import type { RegisterCommand } from './index';


/**
 * Writes a bundle into `dir` (made if missing) as Citadel's three files, and the same as the Envoy
 * SDS files a files-mode bootstrap reads, each replaced atomically.
 */
export async function writeBundleFiles(dir: string, b: { rootCertPem: string; certChainPem: string; keyPem: string }): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  // Root and chain first, key last: a reader never finds a key without its certificate's root.
  await writeFileAtomic(path.join(dir, CITADEL_FILES.root), b.rootCertPem, 0o644);
  await writeFileAtomic(path.join(dir, CITADEL_FILES.certChain), b.certChainPem, 0o644);
  await writeFileAtomic(path.join(dir, CITADEL_FILES.key), b.keyPem, 0o600);
  const sds = envoySdsFiles(b);
  await writeFileAtomic(path.join(dir, ENVOY_SDS_FILES.root), sds[ENVOY_SDS_FILES.root], 0o644);
  await writeFileAtomic(path.join(dir, ENVOY_SDS_FILES.cert), sds[ENVOY_SDS_FILES.cert], 0o600);
}

export const registerCert: RegisterCommand = (program: Command) => {
  const cert = program.command('cert').description('issue, inspect and verify workload certificates');

  addCaOptions(addStoreOption(cert.command('issue')))
    .description('mint a key and certificate for a workload identity into DIR as cert-chain.pem, key.pem, root-cert.pem')
    .requiredOption('-n, --namespace <ns>', 'the workload\'s namespace')
    .requiredOption('-s, --service-account <sa>', 'the workload\'s service account')
    .requiredOption('-o, --out <dir>', 'directory to write the bundle into (created if missing)')
    .option('--ttl <duration>', 'certificate lifetime (default: --workload-cert-ttl)')
    .action(async (o: CaFlagValues & { store: string; kekFile?: string; namespace: string; serviceAccount: string; out: string; ttl?: string }) => {
      const config = caConfigFromFlags(o);
      let identity;
      try {
        identity = workloadIdentity(config.trustDomain, o.namespace, o.serviceAccount);
      } catch (err) {
        throw new UserError((err as Error).message);
      }
      const ttlMs = o.ttl ? parseDuration(o.ttl, '--ttl') : undefined;
      let ca: CertificateAuthority;
      if (config.plugged) ca = CertificateAuthority.fromFiles(config);
      else {
        const store = await openStoreFromFlags(o);
        try {
          ca = await CertificateAuthority.open(store, config);
        } finally {
          await store.close();
        }
      }
      let bundle;
      try {
        bundle = ca.issueKeyCertBundle(identity, ttlMs);
      } catch (err) {
        throw new UserError((err as Error).message);
      }
      await writeBundleFiles(o.out, bundle);
      process.stdout.write(
        `issued ${spiffeId(identity)}\n  valid until ${bundle.notAfter.toISOString()} (${formatDuration(bundle.notAfter.getTime() - Date.now())})\n  wrote ${path.join(o.out, '{cert-chain.pem,key.pem,root-cert.pem}')}\n`,
      );
    });

  addOutputOption(cert.command('inspect'))
    .description('show a certificate: SPIFFE ID, validity, days left, issuer, key type (FILE may be a bundle directory)')
    .argument('<file>', 'a PEM certificate or chain file, or a directory holding cert-chain.pem')
    .action(async (file: string, o: { output: string }) => {
      const pemFile = (await isDirectory(file)) ? path.join(file, CITADEL_FILES.certChain) : file;
      const text = await readText(pemFile);
      const pems = splitCertificates(text);
      if (pems.length === 0) throw new UserError(`${pemFile}: no PEM certificate found`);
      const leaf = parseCertificatePem(pems[0], pemFile);
      const info = describeCertificate(leaf, pems.length);
      if (wantsJson(o)) process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      else {
        process.stdout.write(
          [
            `SPIFFE ID:   ${info.spiffeId ?? '(none)'}`,
            `subject:     ${info.subject || '(empty)'}`,
            `issuer:      ${info.issuer}`,
            `serial:      ${info.serial}`,
            `not before:  ${info.notBefore}`,
            `not after:   ${info.notAfter}`,
            `days left:   ${info.daysLeft}`,
            `key:         ${info.keyType}`,
            `CA:          ${info.isCa}`,
            ...(info.dnsNames.length ? [`DNS names:   ${info.dnsNames.join(', ')}`] : []),
            `chain:       ${info.chainLength} certificate(s)`,
          ].join('\n') + '\n',
        );
      }
    });

  cert
    .command('verify')
    .description('check a bundle directory: chain to root-cert.pem, X.509-SVID rules, key matches, not expired; exit 0, or 1 with the reasons')
    .argument('<dir>', 'directory with cert-chain.pem, key.pem, root-cert.pem')
    .action(async (dir: string) => {
      const [chain, keyPem, root] = await Promise.all([CITADEL_FILES.certChain, CITADEL_FILES.key, CITADEL_FILES.root].map((f) => readText(path.join(dir, f))));
      const { problems } = checkBundle({ certChainPem: chain, keyPem, rootCertPem: root }, { keyLabel: 'key.pem' });
      if (problems.length) {
        process.stderr.write(`citadel: ${dir}: ${problems.join('; ')}\n`);
        process.exitCode = 1;
        return;
      }
      const leaf = parseCertificatePem(splitCertificates(chain)[0]);
      process.stdout.write(`${dir}: OK ${spiffeId(identityOfCertificate(leaf))}, valid until ${leaf.notAfter.toISOString()}\n`);
    });
};

export function describeCertificate(c: ParsedCertificate, chainLength = 1) {
  const name = (rdns: Array<[string, string]>) => rdns.map(([t, v]) => `${t === '2.5.4.10' ? 'O' : t === '2.5.4.3' ? 'CN' : t}=${v}`).join(', ');
  return {
    spiffeId: c.san?.uris.length === 1 ? c.san.uris[0] : undefined,
    subject: name(c.subject),
    issuer: name(c.issuer),
    serial: c.serialHex,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    daysLeft: Math.floor(((c.notAfter.getTime() - Date.now()) / 86_400_000) * 10) / 10,
    keyType: describeKey(publicKeyFromSpki(c.spkiDer)),
    isCa: c.isCa,
    dnsNames: c.san?.dnsNames ?? [],
    chainLength,
  };
}

async function readText(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new UserError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}
