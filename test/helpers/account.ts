import type { AccountConfig } from '../../src/config/config.js';

/** The canary: a secret that must never appear in any output, in any encoding. */
export const CANARY_SECRET = 'CANARY-s3cr3t/+=%&x9';
export const API_KEY = 'canary-key';
export const TRX = '8ef2447e69604f642ae59363aa5f781b';

export function account(baseUrl: string, overrides: Partial<AccountConfig> = {}): AccountConfig {
  return {
    name: 'test',
    apiKey: API_KEY,
    apiSecret: CANARY_SECRET,
    trx: TRX,
    baseUrl,
    subaccountsBaseUrl: baseUrl,
    allowCustomBaseUrl: true,
    auth: 'basic',
    threshold: 10,
    cooldownMs: 15 * 60_000,
    maxPerDay: 3,
    topupEnabled: true,
    dryRun: false,
    leadTimeMs: 0,
    pollAdaptive: false,
    pollMaxIntervalMs: 600_000,
    ...overrides,
  };
}

export function canaryForms(secret = CANARY_SECRET, key = API_KEY): string[] {
  return [
    secret,
    encodeURIComponent(secret),
    new URLSearchParams({ s: secret }).toString().slice(2),
    Buffer.from(secret).toString('base64'),
    Buffer.from(`${key}:${secret}`).toString('base64'),
  ];
}

export function expectNoSecret(text: string, label: string): void {
  for (const form of canaryForms()) {
    if (text.includes(form)) throw new Error(`${label} contains the secret (form: ${form === CANARY_SECRET ? 'raw' : 'encoded'})`);
  }
}
