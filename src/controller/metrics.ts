import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Citadel's secret-controller metric names, plus a few of our own beside them. */
export class SecretControllerMetrics {
  readonly created: Counter;
  readonly deleted: Counter;
  readonly secretDeleted: Counter;
  readonly csrErrors: Counter;
  readonly signErrors: Counter<'error'>;
  readonly refreshed: Counter<'reason'>;
  readonly writeErrors: Counter;
  readonly managed: Gauge;
  readonly reconcileSeconds: Histogram;
  readonly reissueHeld: Counter;
  readonly soonestExpiry: Gauge;

  constructor(registry?: Registry) {
    const registers = registry ? [registry] : [];
    this.created = new Counter({ name: 'citadel_secret_controller_svc_acc_created_cert_count', help: 'Secrets created for service accounts.', registers });
    this.deleted = new Counter({ name: 'citadel_secret_controller_svc_acc_deleted_cert_count', help: 'Secrets deleted because their service account is gone.', registers });
    this.secretDeleted = new Counter({ name: 'citadel_secret_controller_secret_deleted_cert_count', help: 'Secrets found deleted while their account exists (recreated).', registers });
    this.csrErrors = new Counter({ name: 'citadel_secret_controller_csr_err_count', help: 'Errors making a key or CSR for a secret.', registers });
    this.signErrors = new Counter({ name: 'citadel_secret_controller_csr_sign_err_count', help: 'Errors signing a certificate for a secret.', labelNames: ['error'], registers });
    this.refreshed = new Counter({ name: 'citadel_secret_controller_refreshed_cert_count', help: 'Secrets refreshed, by reason (expiring, root-changed, unparseable).', labelNames: ['reason'], registers });
    this.writeErrors = new Counter({ name: 'citadel_secret_controller_store_write_err_count', help: 'Store writes that failed (retried on the next reconcile).', registers });
    this.managed = new Gauge({ name: 'citadel_secret_controller_secrets', help: 'Secrets the controller keeps.', registers });
    this.soonestExpiry = new Gauge({ name: 'citadel_secret_controller_soonest_expiry_timestamp_seconds', help: 'When the first of the kept secrets expires (Unix time); alert when it comes close.', registers });
    this.reissueHeld = new Counter({ name: 'citadel_secret_controller_reissue_held_count', help: 'Refreshes held back because the secret was written less than the minimum re-issue interval ago (a setting that would otherwise re-issue in a loop).', registers });
    this.reconcileSeconds = new Histogram({ name: 'citadel_secret_controller_reconcile_seconds', help: 'Time of one reconcile pass.', buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 3, 10, 30], registers });
  }
}
