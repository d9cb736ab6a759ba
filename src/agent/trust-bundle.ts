/**
 * The roots this node trusts and serves as `ROOTCA`: every root of `--ca-root` (the operator's,
 * distributed out of band), the one the CA signs under now first. The CA's answers only say which
 * of them is current; a root that is not in `--ca-root` is never learned from the network, so
 * during a root rotation (both roots in `--ca-root`) the old and the new leaves trust each other.
 * Files mode writes each identity's root-cert.pem the same way, its own root first.
 */
import { EventEmitter } from 'node:events';
import { splitCertificates } from '../pki/pem';

export interface RootChange {
  previous: string | undefined;
  current: string;
}

/** Events: `changed` (RootChange) when the CA is seen signing under another root of `--ca-root`. */
export class TrustBundle extends EventEmitter {
  /** `--ca-root`, one PEM per root, in file order. */
  readonly roots: readonly string[];
  private currentRoot: string | undefined;
  private bundle: string;

  constructor(caRootPem: string) {
    super();
    this.setMaxListeners(0);
    this.roots = [...new Set(splitCertificates(caRootPem))];
    this.bundle = this.roots.join('');
  }

  /** The root the CA was last seen signing under (undefined before its first answer). */
  get current(): string | undefined {
    return this.currentRoot;
  }

  /** What `ROOTCA` holds: the current root, then the other roots of `--ca-root`. */
  get pem(): string {
    return this.bundle;
  }

  /**
   * What a certificate under `ownRootPem` (one root of `--ca-root`, already verified) is given to
   * trust in files mode: that root, byte for byte as given, then the other roots of `--ca-root`.
   * With one root in `--ca-root` it is `ownRootPem` itself, as Citadel 1.0 wrote root-cert.pem.
   */
  leadingWith(ownRootPem: string): string {
    const own = splitCertificates(ownRootPem);
    const others = this.roots.filter((r) => !own.includes(r));
    if (others.length === 0) return ownRootPem;
    return (ownRootPem.endsWith('\n') ? ownRootPem : ownRootPem + '\n') + others.join('');
  }

  trusts(rootPem: string): boolean {
    return this.roots.includes(rootPem);
  }

  /**
   * A chain the CA sent, verified against `--ca-root`, led to `rootPem`: that is the root it signs
   * under now. Returns whether it changed; a root outside `--ca-root` is refused.
   */
  observe(rootPem: string): boolean {
    if (!this.trusts(rootPem)) throw new Error('the CA answered with a chain whose root is not in --ca-root');
    if (rootPem === this.currentRoot) return false;
    const previous = this.currentRoot;
    this.currentRoot = rootPem;
    this.bundle = [rootPem, ...this.roots.filter((r) => r !== rootPem)].join('');
    if (previous !== undefined) this.emit('changed', { previous, current: rootPem } satisfies RootChange);
    return previous !== undefined;
  }
}
