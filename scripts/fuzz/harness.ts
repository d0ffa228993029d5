/**
 * The fuzzing harness shared by `npm run fuzz` (scripts/fuzz.ts: long
 * campaigns) and jest (test/fuzz-parsers.test.ts: a short pass and the
 * corpus of inputs that once found a bug).
 *
 * A target is one parser of outside input, driven through its public entry
 * point: an arbitrary (fast-check) that generates inputs, mostly valid
 * documents with a few random mutations, and a check that throws a
 * `FuzzDefect` for anything the parser must never do:
 *   - throw anything but a `MasterKeyError` (an "untyped exception"), or one
 *     with the code INTERNAL (a bug by definition), or a code the target
 *     does not expect;
 *   - reject with a message that is not one sentence (one line, ending with
 *     a full stop), or that quotes material it must not (a key);
 *   - break the target's own invariant (a round trip that changes bytes, a
 *     tampered value that opens, ...).
 */
import fc from 'fast-check';
import { ErrorCode, MasterKeyError } from '../../src/errors';

/** A broken invariant: what the parser did wrong (never a secret: inputs are generated). */
export class FuzzDefect extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FuzzDefect';
  }
}

export interface FuzzTarget<T> {
  /** Short name, also the corpus directory: `config-dotenv`. */
  readonly name: string;
  /** The parser and its entry point, for the report. */
  readonly entry: string;
  /** Inputs. */
  readonly arbitrary: fc.Arbitrary<T>;
  /** Throws a FuzzDefect (or anything else, which is a defect too) when the parser misbehaves on `input`; async for parsers that are. */
  check(input: T): void | Promise<void>;
  /** The check returns a promise (a synchronous one runs as a plain property: a few microseconds per input less). */
  readonly async?: boolean;
  /** An input as JSON, for the corpus (strings keep lone surrogates: JSON escapes them). */
  toJson(input: T): unknown;
  fromJson(json: unknown): T;
  /** Called once before the first input (scratch directories) and after the last. */
  setup?(): void;
  teardown?(): void;
}

/** Erases a target's input type, for lists of targets. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTarget = FuzzTarget<any>;

/** The text of an error for a defect report: its class, code and message. */
export function describeError(e: unknown): string {
  if (e instanceof MasterKeyError) return `MasterKeyError ${e.code}: ${e.message}`;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `a thrown ${typeof e}: ${String(e)}`;
}

/**
 * One sentence: one line, not empty, ending with a full stop (a sentence
 * may hold clauses after `;` and quote a path), at most 1,000 characters.
 */
export function isOneSentence(message: string): boolean {
  return message.length > 0 && message.length <= 1000 && !/[\r\n]/.test(message) && /[.]$/.test(message.trimEnd()) && message === message.trim();
}

export interface Rejection {
  readonly code: ErrorCode;
  readonly message: string;
}

/**
 * Runs `fn`: its result, or the typed rejection it threw. Throws a
 * FuzzDefect for an untyped exception, an INTERNAL error, a code not in
 * `codes`, a message that is not one sentence, or one that contains any of
 * `secrets`.
 */
export function typed<R>(what: string, fn: () => R, codes: readonly ErrorCode[], secrets: readonly string[] = []): { ok: true; value: R } | { ok: false; rejection: Rejection } {
  let value: R;
  try {
    value = fn();
  } catch (e) {
    return { ok: false, rejection: checkRejection(what, e, codes, secrets) };
  }
  return { ok: true, value };
}

/** The checks of `typed` on an error already caught. */
export function checkRejection(what: string, e: unknown, codes: readonly ErrorCode[], secrets: readonly string[] = []): Rejection {
  if (e instanceof FuzzDefect) throw e;
  if (!(e instanceof MasterKeyError)) throw new FuzzDefect(`${what} threw an untyped exception (${describeError(e)})`, { cause: e });
  if (e.code === 'INTERNAL' || !codes.includes(e.code)) throw new FuzzDefect(`${what} rejected with the unexpected code ${e.code} (${e.message})`, { cause: e });
  if (!isOneSentence(e.message)) throw new FuzzDefect(`${what} rejected with a message that is not one sentence: ${JSON.stringify(e.message)}`, { cause: e });
  for (const s of secrets) {
    if (s.length >= 8 && (e.message.includes(s) || JSON.stringify(e.details).includes(s))) throw new FuzzDefect(`${what} rejected with a message or details quoting secret material (${e.code})`, { cause: e });
  }
  return { code: e.code, message: e.message };
}

/** Throws a FuzzDefect unless `ok`. */
export function invariant(ok: boolean, message: string): asserts ok {
  if (!ok) throw new FuzzDefect(message);
}

export interface CampaignOptions {
  /** Inputs to run (ignored with `ms`). */
  readonly runs?: number;
  /** Run for this long instead of a number of inputs. */
  readonly ms?: number;
  readonly seed?: number;
}

export interface CampaignResult {
  readonly target: string;
  readonly runs: number;
  readonly ms: number;
  readonly seed: number;
  /** The (shrunk) input that broke the target, and what broke. */
  readonly failure?: { readonly input: unknown; readonly error: string; readonly path?: string };
}

/** Runs one target's campaign; stops at the first defect (shrunk to a small input). */
export async function runCampaign(t: AnyTarget, opts: CampaignOptions = {}): Promise<CampaignResult> {
  const seed = opts.seed ?? (Date.now() ^ (Math.random() * 2 ** 31)) | 0;
  const params: fc.Parameters<[unknown]> = opts.ms !== undefined
    ? { seed, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: opts.ms, markInterruptAsFailure: false }
    : { seed, numRuns: opts.runs ?? 1000 };
  const t0 = process.hrtime.bigint();
  t.setup?.();
  let details: fc.RunDetails<[unknown]>;
  try {
    details = t.async
      ? await fc.check(fc.asyncProperty(t.arbitrary, async (input) => void (await t.check(input))), params)
      : fc.check(fc.property(t.arbitrary, (input) => void t.check(input)), params);
  } finally {
    t.teardown?.();
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const base = { target: t.name, runs: details.numRuns, ms, seed };
  if (!details.failed) return base;
  const input = details.counterexample?.[0];
  return {
    ...base,
    failure: { input: input === undefined ? undefined : t.toJson(input), error: describeError(details.errorInstance), path: details.counterexamplePath ?? undefined },
  };
}

/** Runs the check on one input, with setup and teardown (corpus replays). */
export async function runOne(t: AnyTarget, input: unknown): Promise<void> {
  t.setup?.();
  try {
    await t.check(input);
  } finally {
    t.teardown?.();
  }
}
