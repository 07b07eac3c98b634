// Types for scripts/integration-preflight.mjs, so that test/integration/helpers/system.ts can
// share its checks under `tsc --strict` (the script itself stays plain Node, run before any build).
export interface Program {
  name: string;
  debianPackage: string;
  why: string;
}
export interface Missing {
  problem: string;
  debianPackage?: string;
}
export const PROGRAMS: readonly Program[];
export const LIBFAKETIME_PACKAGE: string;
export function libfaketimeCandidates(): string[];
export function findLibfaketime(): string | undefined;
export function findProgram(name: string): string | undefined;
export function programProblem(name: string, debianPackage: string): string;
export function libfaketimeProblem(): string;
export function rootProblem(uid: number | string): string;
export function namespaceProblem(): string | undefined;
export function missingRequirements(): Missing[];
export function installCommand(packages: string[]): string | undefined;
export function describeMissing(missing: Missing[]): string;
export const POSTGRES_PACKAGE: string;
export function findPostgresBin(): string | undefined;
export function postgresProblem(): string;
