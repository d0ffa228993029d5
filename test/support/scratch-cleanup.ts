/**
 * Runs in every test file (jest setupFilesAfterEnv): after the file's tests,
 * also when they failed, removes every scratch directory the file made and
 * did not remove itself (unless KEEP is set).
 */
import { removeAllScratch } from '../../scripts/scratch';

afterAll(() => {
  removeAllScratch();
});
