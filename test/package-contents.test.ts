/**
 * What `npm pack` puts in the published tarball, and its size budget: the
 * compiled library, CLI and provider (with its .proto files), the addon's
 * sources and its linux-x64 prebuild, the docs and JSON Schemas, the
 * scheduled-rotation examples, README and LICENSE; no tests, no bench or
 * soak scripts, no example app, no source maps. Read from
 * `npm pack --dry-run --json`, which lists every file and its size.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(__dirname, '..');

interface Packed {
  readonly name: string;
  readonly version: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly entryCount: number;
  readonly files: ReadonlyArray<{ readonly path: string; readonly size: number }>;
}

/**
 * The size budget: about a fifth above what the tarball weighed when it was
 * last set (348 files, 468,403 bytes packed, 1,561,644 unpacked, after nodes
 * on other hosts, seal-ahead and the lock and privilege checks landed). A
 * tarball that ships tests, scripts or source maps by mistake doubles; this
 * catches that.
 */
const PACKAGE_BUDGET = { files: 420, packedBytes: 560_000, unpackedBytes: 1_870_000 };

describe('the published package (npm pack --dry-run --json)', () => {
  let packed: Packed;
  let paths: string[];
  beforeAll(() => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    packed = (JSON.parse(r.stdout) as Packed[])[0];
    paths = packed.files.map((f) => f.path).sort();
  });

  it('holds the compiled constructs, CLI and provider, the prebuilt addon, docs, schemas, README and LICENSE', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string>; exports: Record<string, unknown>; main: string; types: string };
    for (const p of [
      pkg.main,
      pkg.types,
      pkg.bin['master-key'],
      'dist/src/provider/main.js',
      'dist/src/store/sqlite/reader-worker.js',
      'dist/src/engine/crypto-worker.js',
      'src/provider/proto/tfplugin6.proto',
      'native/gcm_batch.c',
      'native/binding.gyp',
      `native/prebuilds/linux-x64/gcm_batch.glibc.node`,
      'docs/schemas/report.schema.json',
      'dist/docs/schemas/inventory.schema.json',
      'README.md',
      'LICENSE',
      'package.json',
    ]) {
      expect(paths).toContain(p.replace(/^\.\//, ''));
    }
    expect(pkg.exports['.']).toEqual({ types: './dist/constructs/index.d.ts', default: './dist/constructs/index.js' });
  });

  it('holds no tests, scripts, example app, TypeScript sources or source maps', () => {
    const stray = paths.filter(
      (p) =>
        /^(test|scripts|dist\/test|dist\/scripts|\.ci|cdktf\.out|node_modules)\//.test(p) ||
        /^(main\.ts|dist\/main\.|cdktf\.json|tsconfig|jest\.config|\.terraformrc)/.test(p) ||
        p.endsWith('.map') ||
        (p.endsWith('.ts') && !p.endsWith('.d.ts')) ||
        p.startsWith('native/build/'),
    );
    expect(stray).toEqual([]);
  });

  it(`stays within its size budget (${PACKAGE_BUDGET.files} files, ${PACKAGE_BUDGET.packedBytes} bytes packed, ${PACKAGE_BUDGET.unpackedBytes} unpacked)`, () => {
    expect(packed.entryCount).toBe(paths.length);
    expect(packed.entryCount).toBeLessThanOrEqual(PACKAGE_BUDGET.files);
    expect(packed.size).toBeLessThanOrEqual(PACKAGE_BUDGET.packedBytes);
    expect(packed.unpackedSize).toBeLessThanOrEqual(PACKAGE_BUDGET.unpackedBytes);
  });
});
