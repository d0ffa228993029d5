/**
 * The fuzz campaigns' short pass (`npm run fuzz` runs the long ones): every
 * parser of outside input replays its corpus (test/fuzz-corpus/<target>/:
 * inputs that once found a bug) and then runs a few thousand fresh inputs
 * (scripts/fuzz/harness.ts says what counts as a defect). The seed is
 * random, printed with any failure, and fixed with FUZZ_SEED=<n>.
 *
 * Plus the config round trip on real files: generated files the reader
 * accepts, written with writeConfigKey and read back with readConfigKey.
 */
import fc from 'fast-check';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeScratch, scratchDir } from '../scripts/scratch';
import { readCorpus } from '../scripts/fuzz/corpus';
import { runCampaign, runOne } from '../scripts/fuzz/harness';
import { TARGETS } from '../scripts/fuzz/targets';
import { ConfigInput, DOTENV_TARGET, JSON_TARGET, XML_TARGET } from '../scripts/fuzz/targets/config';
import { configTarget, readConfigKey, writeConfigKey } from '../src/config/config-file';
import { ConfigFormat, readEntry, replaceEntry } from '../src/config/formats';
import { MasterKey } from '../src/crypto/key';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (Math.random() * 2 ** 31)) | 0;
/** Inputs per parser in this pass: a few seconds at most each on a loaded machine. */
const SHORT_RUNS = 3000;

describe.each(TARGETS.map((t) => ({ name: t.name, t })))('fuzzing $name', ({ t }) => {
  const corpus = readCorpus(t.name);

  if (corpus.length > 0) {
    it.each(corpus.map((c) => ({ file: c.file.replace(/^.*fuzz-corpus\//, ''), c })))('replays $file', async ({ c }) => {
      expect(c.found).toMatch(/\S/);
      await runOne(t, t.fromJson(c.input));
    });
  }

  it(`survives ${SHORT_RUNS} fresh inputs (seed ${SEED})`, async () => {
    const r = await runCampaign(t, { runs: SHORT_RUNS, seed: SEED });
    if (r.failure) throw new Error(`${t.name} (seed ${r.seed}): ${r.failure.error}; input ${JSON.stringify(r.failure.input)}`);
    expect(r.runs).toBe(SHORT_RUNS);
  });
});

describe('config round trips on real files', () => {
  const TARGET_OF: Record<ConfigFormat, typeof DOTENV_TARGET> = { dotenv: DOTENV_TARGET, json: JSON_TARGET, xml: XML_TARGET };
  let dir: string;
  beforeAll(() => {
    dir = scratchDir('mk-fuzz-config-');
  });
  afterAll(() => removeScratch(dir));

  it.each(['dotenv', 'json', 'xml'] as const)('%s: writeConfigKey then readConfigKey gives the key, every other byte and the mode kept', (format) => {
    const accepted = fc.sample(TARGET_OF[format].arbitrary, { numRuns: 3000, seed: SEED }).filter((i: ConfigInput) => {
      try {
        readEntry(i.text, format, i.entry, 'x');
        return !/[\ud800-\udfff]/.test(i.text.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '')); // a file holds UTF-8: no lone surrogates
      } catch {
        return false;
      }
    });
    expect(accepted.length).toBeGreaterThan(20);
    for (const [n, input] of accepted.slice(0, 40).entries()) {
      const path = join(dir, `c${n}.${format === 'dotenv' ? 'env' : format}`);
      writeFileSync(path, input.text);
      chmodSync(path, 0o640);
      const t = configTarget(path, input.entry, format);
      const key = MasterKey.fromBytes(new Uint8Array(Buffer.from(input.key, 'hex')));
      writeConfigKey(t, key);
      expect(readConfigKey(t).equals(key)).toBe(true);
      expect(readFileSync(path)).toEqual(Buffer.from(replaceEntry(input.text, format, input.entry, key.toHex(), 'x'), 'utf8'));
      expect(statSync(path).mode & 0o777).toBe(0o640);
    }
  });
});
