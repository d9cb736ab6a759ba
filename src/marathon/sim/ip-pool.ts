/**
 * The simulator's container network: IPv4 addresses for containers on `container` networks,
 * handed out in order from a CIDR (DC/OS's overlay is 9.0.0.0/8), skipping the ones in use and
 * not reusing a freed one before the range wraps, so the same requests get the same addresses.
 */

export const DEFAULT_CONTAINER_NETWORK_CIDR = '9.0.0.0/8';

const toText = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** Parses `a.b.c.d/len`; throws an Error saying what is wrong. */
export function parseCidr(cidr: string): { first: number; last: number } {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr.trim());
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const len = m ? Number(m[5]) : NaN;
  if (!m || octets.some((o) => o > 255) || len > 32) throw new Error(`"${cidr}" is not an IPv4 CIDR; write it like 9.0.0.0/8`);
  const base = ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) >>> 0;
  const size = 2 ** (32 - len);
  const network = base - (base % size);
  // leave out the network and broadcast addresses where a range has them
  return size <= 2 ? { first: network, last: network + size - 1 } : { first: network + 1, last: network + size - 2 };
}

export class IpPool {
  private readonly first: number;
  private readonly last: number;
  private next: number;
  private readonly used = new Set<number>();

  constructor(readonly cidr = DEFAULT_CONTAINER_NETWORK_CIDR) {
    ({ first: this.first, last: this.last } = parseCidr(cidr));
    this.next = this.first;
  }

  allocate(): string {
    const size = this.last - this.first + 1;
    for (let tried = 0; tried < size; tried++) {
      const n = this.next;
      this.next = n === this.last ? this.first : n + 1;
      if (!this.used.has(n)) {
        this.used.add(n);
        return toText(n);
      }
    }
    throw new Error(`container network ${this.cidr} has no free address (${size} in use); give the simulator a bigger --container-network-cidr`);
  }

  release(ip: string): void {
    const o = ip.split('.').map(Number);
    this.used.delete(((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0);
  }
}
