/**
 * How the constructs refuse a bad prop: one `USAGE` error that names what is
 * being built, the prop, its value (unless it looks like a credential) and
 * the fix, thrown when the construct or Aspect is created.
 */
import { MasterKeyError } from '../src/errors';

/** Throws the USAGE error for one bad prop: `<subject>: <prop> <problem>; <fix>.` */
export type Fail = (prop: string, problem: string, fix: string) => never;

/** A `Fail` for one subject, e.g. `MasterKey stack/key` or `MasterKeyPolicy`. */
export function failFor(subject: string): Fail {
  return (prop, problem, fix) => {
    throw new MasterKeyError('USAGE', `${subject}: ${prop} ${problem}; ${fix}.`);
  };
}
