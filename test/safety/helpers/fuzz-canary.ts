/**
 * Secret canaries for the fidelity and fuzz suites: every form in which a secret could leak
 * (raw, lower-cased as URL host parsing would make it, JSON-escaped, URL-encoded both ways,
 * base64 of the secret and of the Basic `key:secret` pair).
 */

export function secretForms(secret: string, ...apiKeys: string[]): string[] {
  const forms = new Set<string>([
    secret,
    secret.toLowerCase(),
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
    new URLSearchParams({ s: secret }).toString().slice(2),
    Buffer.from(secret).toString('base64'),
  ]);
  for (const key of apiKeys) forms.add(Buffer.from(`${key}:${secret}`).toString('base64'));
  // Forms shorter than 6 characters would turn up by chance in ordinary output.
  return [...forms].filter((f) => f.length >= 6);
}

/** The first form found in `text`, or undefined. */
export function findSecret(text: string, forms: readonly string[]): string | undefined {
  return forms.find((f) => text.includes(f));
}

/** A short label for a found form, never the form itself (the report must not leak either). */
export function describeForm(form: string, secret: string): string {
  if (form === secret) return 'raw';
  if (form === secret.toLowerCase()) return 'lower-cased';
  if (form === encodeURIComponent(secret)) return 'URL-encoded';
  if (form === Buffer.from(secret).toString('base64')) return 'base64';
  return 'encoded';
}

/** Throws with a label (never the secret) when any form of any secret is in `text`. */
export function expectNoSecrets(text: string, secrets: readonly { secret: string; forms: readonly string[] }[], label: string): void {
  for (const { secret, forms } of secrets) {
    const found = findSecret(text, forms);
    if (found !== undefined) {
      const at = text.indexOf(found);
      const context = text.slice(Math.max(0, at - 60), at).replace(/[^\x20-\x7e]/g, '?');
      throw new Error(`${label} contains a secret (${describeForm(found, secret)} form), after: …${context}`);
    }
  }
}
