/**
 * Files mode: the workload certificate and the mesh root as SDS Secrets the xDS server serves on
 * the proxy's ADS stream. They carry file names, never key material: Envoy reads the files
 * itself, and reads them again whenever an entry of the directory is moved to (watched_directory),
 * which is how the node agent, like the kubelet, swaps `..data` to a new version. So a rotated
 * certificate is used on the next handshake, with no restart and no push.
 */
import { CERT_FILES } from '../bootstrap/contract';
import { fileCertSecretName, fileRootSecretName } from '../names';
import { TYPE_URL, xdsResource, type XdsResource } from '../resources';

export interface FileSecrets {
  readonly cert: XdsResource;
  readonly root: XdsResource;
}

/** The names of a certificate directory's two Secrets (Istio's file-based shapes). */
export function fileSecretNames(dir: string): { cert: string; root: string } {
  return { cert: fileCertSecretName(`${dir}/${CERT_FILES.certChain}`, `${dir}/${CERT_FILES.key}`), root: fileRootSecretName(`${dir}/${CERT_FILES.root}`) };
}

/** The two Secrets of a certificate directory (as the sidecar sees it: /etc/certs, or its CITADEL_CERTS_DIR). */
export function fileSecrets(dir: string): FileSecrets {
  const names = fileSecretNames(dir);
  const watched = { path: dir };
  return {
    cert: xdsResource(TYPE_URL.secret, names.cert, {
      name: names.cert,
      tls_certificate: { certificate_chain: { filename: `${dir}/${CERT_FILES.certChain}` }, private_key: { filename: `${dir}/${CERT_FILES.key}` }, watched_directory: watched },
    }),
    root: xdsResource(TYPE_URL.secret, names.root, {
      name: names.root,
      validation_context: { trusted_ca: { filename: `${dir}/${CERT_FILES.root}` }, watched_directory: watched },
    }),
  };
}
