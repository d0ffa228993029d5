import { MasterKeyError, isMasterKeyError } from '../../src/errors';

/** Runs fn and returns the MasterKeyError it throws (any other outcome fails the test). */
export function caught(fn: () => unknown): MasterKeyError {
  try {
    fn();
  } catch (e) {
    if (isMasterKeyError(e)) return e;
    throw e;
  }
  throw new Error('expected a MasterKeyError, nothing was thrown');
}
