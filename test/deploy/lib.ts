// Helpers for the deployment tests: small parsers for the Dockerfile, .dockerignore, PromQL
// metric names and Compose interpolation. Deliberately simple; each is tested in static.test.ts.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export function read(rel: string): string {
  return readFileSync(join(ROOT, rel), 'utf8');
}

export function readYaml<T = unknown>(rel: string): T {
  return parse(read(rel)) as T;
}

// ---- Dockerfile -------------------------------------------------------------------------------

export interface Instruction {
  keyword: string; // upper case
  args: string; // the rest, continuations joined
  line: number; // 1-based line of the keyword
}

export interface Stage {
  from: string; // image or earlier stage name
  name: string | undefined;
  index: number;
  instructions: Instruction[]; // after FROM
}

/** Instructions with `\` continuations joined; comment lines and parser directives dropped. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split(/\r?\n/);
  let buffer = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    const trimmed = raw.trim();
    // Docker removes comment lines even inside a continued instruction.
    if (trimmed.startsWith('#')) continue;
    if (buffer === '' && trimmed === '') continue;
    if (buffer === '') start = i + 1;
    if (trimmed.endsWith('\\')) {
      buffer += `${trimmed.slice(0, -1).trim()} `;
      continue;
    }
    buffer += trimmed;
    const full = buffer.trim();
    buffer = '';
    if (full === '') continue;
    const m = /^(\S+)\s*(.*)$/s.exec(full);
    if (!m) continue;
    out.push({ keyword: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim(), line: start });
  }
  if (buffer.trim() !== '') throw new Error('Dockerfile ends inside a continued instruction');
  return out;
}

export function stages(instructions: Instruction[]): Stage[] {
  const result: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const from = words[0] ?? '';
      const asIndex = words.findIndex((w) => w.toUpperCase() === 'AS');
      result.push({ from, name: asIndex >= 0 ? words[asIndex + 1] : undefined, index: result.length, instructions: [] });
    } else {
      const current = result[result.length - 1];
      if (!current) {
        if (ins.keyword === 'ARG') continue; // global ARG before the first FROM
        throw new Error(`${ins.keyword} before the first FROM (line ${ins.line})`);
      }
      current.instructions.push(ins);
    }
  }
  return result;
}

/** `["a","b"]` → ['a','b']; undefined when the text is not a JSON array of strings (shell form). */
export function execForm(text: string): string[] | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  } catch {
    return undefined;
  }
}

/** COPY/ADD: the flags (--from=x), the sources and the destination. */
export function copyParts(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const json = execForm(args.replace(/^(--\S+\s+)*/, ''));
  const flags: Record<string, string> = {};
  for (const m of args.matchAll(/--([a-z-]+)=(\S+)/g)) flags[m[1] ?? ''] = m[2] ?? '';
  const words = json ?? args.split(/\s+/).filter((w) => !w.startsWith('--'));
  return { flags, sources: words.slice(0, -1), dest: words[words.length - 1] ?? '' };
}

/** ENV a=b c=d (or the legacy `ENV a b`). */
export function envPairs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!args.includes('=')) {
    const [k, ...rest] = args.split(/\s+/);
    if (k) out[k] = rest.join(' ');
    return out;
  }
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|'([^']*)'|\S*)/g)) {
    out[m[1] ?? ''] = m[3] ?? m[4] ?? m[2] ?? '';
  }
  return out;
}

// ---- .dockerignore ----------------------------------------------------------------------------

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        // `**/` matches any number of directories, including none.
        if (pattern[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}

/**
 * Whether Docker leaves `path` out of the build context: the last matching rule wins, and a
 * rule matches a path when it matches the path or one of its parent directories (moby's
 * patternmatcher semantics, minus the rarely used character classes).
 */
export function dockerignoreExcludes(dockerignore: string, path: string): boolean {
  const rules = dockerignore
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).trim().replace(/^\/+/, '').replace(/\/+$/, '');
      return { negate, re: globToRegExp(pattern) };
    });
  const parts = path.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let excluded = false;
  for (const rule of rules) {
    if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negate;
  }
  return excluded;
}

// ---- PromQL -----------------------------------------------------------------------------------

const PROMQL_KEYWORDS = new Set([
  'and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left',
  'group_right', 'atan2', 'inf', 'nan', 'start', 'end',
]);

/**
 * Metric names a PromQL expression selects. Grafana macros and variables are allowed. Label
 * matchers, ranges, string literals, grouping clauses, numbers, durations and function names
 * are not metric names.
 */
export function promqlMetricNames(expr: string): string[] {
  let s = expr;
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' '); // strings
  s = s.replace(/\{[^}]*\}/g, ' '); // label matchers
  s = s.replace(/\[[^\]]*\]/g, ' '); // ranges and subqueries
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  s = s.replace(/\$\{[^}]*\}|\$[A-Za-z_]\w*/g, ' '); // Grafana variables outside brackets
  const names = new Set<string>();
  const token = /(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g;
  for (const m of s.matchAll(token)) {
    if (m[1] !== undefined) continue; // number or duration
    const word = m[2];
    if (word === undefined || m[3] !== undefined) continue; // function call
    if (PROMQL_KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names].sort();
}

/** Grafana macros replaced with values that promtool accepts. */
export function grafanaToPromql(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, '1m')
    .replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, '.*');
}

// ---- Compose ----------------------------------------------------------------------------------

/** `${NAME:-default}` → {name, default}; a literal value → {default: value}. */
export function interpolation(value: unknown): { name: string | undefined; default: string } {
  const text = String(value);
  const m = /^\$\{(\w+)(?::?-([^}]*))?\}$/.exec(text);
  if (m) return { name: m[1], default: m[2] ?? '' };
  return { name: undefined, default: text };
}

// ---- References to the repository ---------------------------------------------------------------

/**
 * The anchors GitHub gives the headings of a Markdown document: lower case, punctuation other
 * than `-` and `_` dropped, each space a `-`, and `-1`, `-2`, … on repeats. Lines inside fenced
 * code blocks are not headings (a `# comment` in a shell example).
 */
export function githubAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split(/\r?\n/)) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = (m[1] ?? '').toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Repository paths a text names: `src/x.ts`, `deploy/kubernetes/`, … (globs and URLs left out). */
export function repositoryPaths(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(/(?<![\w./:-])((?:docs|config|deploy|scripts|src|test|bench)\/[\w./-]*)/g)) {
    const path = (m[1] ?? '').replace(/[./-]+$/, '');
    if (path.includes('*') || !path.includes('/')) continue;
    found.add(path);
  }
  return [...found].sort();
}

/** `README.md#anchor` references in a text (also inside a URL). */
export function readmeAnchorRefs(text: string): string[] {
  return [...new Set([...text.matchAll(/README\.md#([\w-]+)/g)].map((m) => m[1] ?? ''))].sort();
}

/** The comments of a YAML (or shell, or Dockerfile) text: what follows a `#` at a line start or after a blank. */
export function hashComments(text: string): string {
  return text
    .split(/\r?\n/)
    .flatMap((line) => {
      const m = /(?:^|\s)#(.*)$/.exec(line);
      return m ? [m[1] ?? ''] : [];
    })
    .join('\n');
}
