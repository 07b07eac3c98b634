/**
 * The shapes every part of the fleet agrees on: what a subaccount list and a balance transfer look
 * like once parsed (src/vonage/subaccounts-*.ts produce them), and how a primary's subaccounts are
 * configured (src/config/ reads them from ACCOUNTS_FILE). Types only: no code, no I/O.
 */

/** One subaccount as the list call returns it, parsed and checked. */
export interface SubaccountEntry {
  apiKey: string;
  name: string;
  /** EUR; null when the subaccount spends its primary's balance (`use_primary_account_balance`). */
  balance: number | null;
  creditLimit: number | null;
  usePrimaryBalance: boolean;
  suspended: boolean;
  createdAt: string;
}

/** A list entry that failed its checks: that subaccount's reading failed, the others stand. */
export interface UnreadableEntry {
  /** Position in the answer. */
  index: number;
  /** When the entry's own api key could be read; without it, any watched key may be this one. */
  apiKey?: string;
  problem: string;
  /** The entry has the primary's own key: it is no subaccount, and stands for none of them. */
  primaryKey?: true;
}

/** One `GET /accounts/{primary}/subaccounts` answer: the primary and all its subaccounts. */
export interface SubaccountList {
  primary: { apiKey: string; name: string; balance: number; creditLimit: number | null };
  /** The entries that passed every check (api keys unique). */
  subaccounts: SubaccountEntry[];
  unreadable: UnreadableEntry[];
  /** Wall-clock ms (injected clock) when the answer arrived. */
  at: number;
  /** Monotonic ms when the answer arrived. */
  mono: number;
  requestId?: string;
}

export interface TransferRequest {
  from: string;
  to: string;
  /** EUR */
  amount: number;
  /** The ledger attempt id: after a lost answer, the history says whether the transfer happened. */
  reference: string;
}

export interface TransferReceipt {
  id: string;
  amount: number;
  from: string;
  to: string;
  reference: string;
  createdAt: string;
}

/** Thresholds and limits of one subaccount (the group's, with its override applied). */
export interface SubaccountSettings {
  threshold: number;
  /** EUR per transfer (0 when refill is none). */
  transferAmount: number;
  cooldownMs: number;
  maxPerDay: number;
  /** As TOPUP_LEAD_TIME: transfer when the forecast says the threshold is this close (0 or unset: reactive only). */
  leadTimeMs?: number;
}

/** The `subaccounts:` block of one primary in ACCOUNTS_FILE, defaults applied. */
export interface SubaccountsConfig {
  watch: 'all' | readonly string[];
  refill: 'transfer' | 'none';
  /** Settings for every watched subaccount without an override. */
  settings: SubaccountSettings;
  /** Per subaccount api key: the settings that differ. */
  overrides: Readonly<Record<string, Partial<SubaccountSettings>>>;
  /** EUR: a transfer never leaves the primary below this. */
  primaryReserve: number;
  /** EUR moved to all subaccounts of this primary in any rolling 24 h. */
  maxTransferredPerDay: number;
  /** false: watch and report only (the file's topupEnabled for this block). */
  transfersEnabled: boolean;
  dryRun: boolean;
}
