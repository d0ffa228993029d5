/**
 * Spotting things that look like credentials in construct props, so they are
 * refused at synth instead of landing in `cdk.tf.json` and terraform state.
 * Findings name the kind of credential and where it is, never the value.
 */

interface Detector {
  readonly kind: string;
  readonly pattern: RegExp;
}

const DETECTORS: readonly Detector[] = [
  { kind: 'a URL with a password', pattern: /[a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:[^\s/?#@]+@/i },
  { kind: 'a 64-hex-character string (the shape of a master key)', pattern: /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/i },
  { kind: 'a PEM private key', pattern: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/ },
  { kind: 'a password setting', pattern: /passw(?:or)?d\s*[=:]\s*[^\s'"&;]/i },
  { kind: 'an AWS access key id', pattern: /\bAKIA[0-9A-Z]{16}\b/ },
  { kind: 'a GitHub token', pattern: /\bgh[pousr]_[A-Za-z0-9]{30,}\b/ },
];

/** The kinds of credential a text looks like it contains (empty when none). */
export function credentialKinds(text: string): string[] {
  return DETECTORS.filter((d) => d.pattern.test(text)).map((d) => d.kind);
}

/** True when the text looks like it contains a credential. */
export function looksLikeCredential(text: string): boolean {
  return credentialKinds(text).length > 0;
}

/** A string found somewhere inside a props object, with its path (`configFiles[1]`). */
export interface PropString {
  readonly path: string;
  readonly value: string;
}

/** Every string inside a value (objects, arrays), with the path that reaches it. */
export function propStrings(value: unknown, path = ''): PropString[] {
  if (typeof value === 'string') return [{ path: path || '(value)', value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => propStrings(v, `${path}[${i}]`));
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => [
      ...(looksLikeCredential(k) ? [{ path: path ? `${path} (a key)` : '(a key)', value: k }] : []),
      ...propStrings(v, path ? `${path}.${k}` : k),
    ]);
  }
  return [];
}

/** One credential-looking string: where it is and what it looks like. */
export interface CredentialFinding {
  readonly path: string;
  readonly kinds: readonly string[];
}

/** Every credential-looking string in a props object. */
export function findCredentials(props: unknown): CredentialFinding[] {
  return propStrings(props)
    .map((s) => ({ path: s.path, kinds: credentialKinds(s.value) }))
    .filter((f) => f.kinds.length > 0);
}

/**
 * A value safe to quote in an error message: a string in quotes when it does
 * not look like a credential (else a placeholder naming the kind), a list,
 * a Date or an object by its kind (never its content), other values as they
 * print.
 */
export function quotable(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Date) return 'a Date';
  if (value !== null && typeof value === 'object') return 'an object';
  if (typeof value !== 'string') return String(value);
  const kinds = credentialKinds(value);
  return kinds.length === 0 ? JSON.stringify(value) : `(a value that looks like ${kinds[0]}, not shown)`;
}
