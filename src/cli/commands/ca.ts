import { Command } from 'commander';
import { CertificateAuthority, rootFields } from '../../ca/authority';
import { parseCertificatePem } from '../../pki/certificate';
import { addCaOptions, addOutputOption, addStoreOption, caConfigFromFlags, CaFlagValues, openStoreFromFlags, wantsJson } from '../options';
import type { RegisterCommand } from './index';

export const registerCa: RegisterCommand = (program: Command) => {
  const ca = program.command('ca').description('the certificate authority: its root and signing material');
  addOutputOption(addCaOptions(addStoreOption(ca.command('init'))))
    .description('create the self-signed root in the store (Citadel\'s istio-ca-secret), or show the existing one; with --signing-cert etc., check a plugged-in CA bundle')
    .action(async (o: CaFlagValues & { store: string; kekFile?: string; output: string }) => {
      const config = caConfigFromFlags(o);
      let status: 'created' | 'existing' | 'plugged-in';
      let authority: CertificateAuthority;
      if (config.plugged) {
        authority = CertificateAuthority.fromFiles(config);
        status = 'plugged-in';
      } else {
        const store = await openStoreFromFlags(o);
        try {
          const before = await store.getCaSecret();
          authority = await CertificateAuthority.open(store, config);
          status = before ? 'existing' : 'created';
        } finally {
          await store.close();
        }
      }
      const root = parseCertificatePem(authority.rootCertPem);
      const organization = root.subject.find(([t]) => t === '2.5.4.10')?.[1];
      const info = {
        status,
        store: config.plugged ? undefined : o.store,
        ...rootFields(authority.rootCertPem),
        intermediates: authority.intermediatePems.length,
      };
      if (wantsJson(o)) {
        process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      } else {
        const verb = { created: 'created a new self-signed root', existing: 'the root already exists (unchanged)', 'plugged-in': 'plugged-in CA bundle checked: OK' }[status];
        process.stdout.write(
          `${verb}\n  subject:   ${info.subject}\n  expires:   ${info.notAfter}\n  sha256:    ${info.sha256}\n` +
            (info.store ? `  store:     ${info.store}\n` : `  intermediates: ${info.intermediates}\n`),
        );
      }
      if (status === 'existing' && organization && organization !== config.trustDomain) {
        process.stderr.write(`citadel: warning: the existing root is for trust domain "${organization}", not "${config.trustDomain}"\n`);
      }
    });
};
