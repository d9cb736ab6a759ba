/** The Mesos-DNS name Marathon's tasks get: `/prod/payments/api` -> `api-payments-prod.marathon.mesos`. */

export const MARATHON_DOMAIN = 'marathon.mesos';

/**
 * The id's segments reversed and joined by `-` (Marathon names the Mesos task `api.payments.prod`;
 * Mesos-DNS turns the dots into dashes, also those inside a segment), lower-cased, plus the domain.
 */
export function mesosDnsName(marathonId: string): string {
  const segments = marathonId.split('/').filter((s) => s.length > 0);
  return `${segments.reverse().join('-').replace(/\./g, '-').toLowerCase()}.${MARATHON_DOMAIN}`;
}
