/**
 * Two copies of the construct library in one app, as when an app and a
 * construct library it uses each install their own cdktf-master-key: here
 * the TypeScript sources (`../constructs`) and the built package
 * (`dist/constructs`), required from two paths, so each has its own
 * `MasterKey` and `MasterKeyInventory` classes while both build on the one
 * cdktf (or cdktn) the app has. Keys, inventories and policies of one copy
 * are recognised by the other through `Symbol.for` markers, where
 * `instanceof` says no. Run with cdktf and with cdktn.
 */
import { join } from 'node:path';
import * as cdktf from 'cdktf';
import * as cdktn from 'cdktn';
import { IConstruct } from 'constructs';
import * as source from '../constructs';
import { removeScratch, scratchDir } from '../scripts/scratch';

type Library = typeof source;
/** The built copy (npm run build makes it; npm test builds first). */
const built = require(join(__dirname, '..', 'dist', 'constructs')) as Library;

const LIBRARIES: ReadonlyArray<[string, typeof cdktf]> = [
  ['cdktf', cdktf],
  ['cdktn', cdktn as unknown as typeof cdktf],
];

const props = (name: string, over: Partial<source.MasterKeyProps> = {}): source.MasterKeyProps => ({
  name,
  generation: 1,
  rotationPolicy: { periodDays: 90, evaluatedAt: '2026-03-10T12:00:00Z' },
  configFiles: [`/etc/${name}/app.env`],
  backupDir: `/var/backups/${name}`,
  cliCommand: ['/usr/bin/node', '/opt/mk/dist/src/cli/main.js'],
  ...over,
});

function messages(scope: IConstruct, level: 'warn' | 'error' | 'info'): string[] {
  return scope.node.findAll().flatMap((c) => c.node.metadata.filter((m) => m.type === `@cdktf/${level}`).map((m) => `[${c.node.path}] ${String(m.data)}`));
}

it('the two copies really are two: their classes differ', () => {
  expect(built.MasterKey).not.toBe(source.MasterKey);
  expect(built.MasterKeyInventory).not.toBe(source.MasterKeyInventory);
});

describe.each(LIBRARIES)('with %s', (_name, lib) => {
  const OUT = scratchDir('mk-copies-');
  afterAll(() => removeScratch(OUT));
  const newStack = () => new lib.TerraformStack(lib.Testing.app({ outdir: OUT }), 'stack');

  it('MasterKey.isMasterKey recognises a key of either copy, where instanceof does not, and nothing else', () => {
    const stack = newStack();
    const mine = new source.MasterKey(stack, 'mine', props('mine'));
    const theirs = new built.MasterKey(stack, 'theirs', props('theirs'));
    expect(theirs instanceof source.MasterKey).toBe(false);
    for (const isMasterKey of [source.MasterKey.isMasterKey, built.MasterKey.isMasterKey]) {
      expect(isMasterKey(mine)).toBe(true);
      expect(isMasterKey(theirs)).toBe(true);
      for (const other of [stack, mine.resource, undefined, null, 'mine', 42, { settings: mine.settings }]) expect(isMasterKey(other)).toBe(false);
    }
    expect(stack.node.findAll().filter(source.MasterKey.isMasterKey).map((k) => k.node.id)).toEqual(['mine', 'theirs']);
  });

  it('keeps the props to itself: no props property, only the validated settings', () => {
    const key = new source.MasterKey(newStack(), 'key', props('act'));
    expect('props' in key).toBe(false);
    expect(key.settings.name).toBe('act');
  });

  it('a key takes an inventory made by the other copy', () => {
    const inventory = built.MasterKeyInventory.act();
    expect(inventory instanceof source.MasterKeyInventory).toBe(false);
    expect(source.MasterKeyInventory.isMasterKeyInventory(inventory)).toBe(true);
    expect(source.MasterKeyInventory.isMasterKeyInventory({ spec: 'act' })).toBe(false);
    const key = new source.MasterKey(newStack(), 'key', props('act', { inventory }));
    expect(key.triggers.inventory).toBe(source.MasterKeyInventory.act().describe());
  });

  it('refuses a second key of the same name in a stack whichever copy built the first', () => {
    const stack = newStack();
    new built.MasterKey(stack, 'theirs', props('act'));
    let err: unknown;
    try {
      new source.MasterKey(stack, 'mine', props('act'));
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('USAGE');
    expect((err as Error).message).toBe('MasterKey stack/mine: name "act" is already used by stack/theirs in the same stack; give each key its own name.');
  });

  it("a policy of one copy checks the other copy's keys, each key once, the outermost policy winning", () => {
    const stack = newStack();
    lib.Aspects.of(stack).add(new source.MasterKeyPolicy({ maxRotationDays: 60 }));
    new built.MasterKey(stack, 'theirs', props('theirs', { startCommand: 'systemctl start theirs' }));
    new source.MasterKey(stack, 'mine', props('mine', { startCommand: 'systemctl start mine' }));
    lib.Testing.synth(stack);
    expect(messages(stack, 'error').sort()).toEqual([
      '[stack/mine] [MasterKey-MaxRotationPeriod] rotationPolicy.periodDays is 90 days, longer than the 60 days the policy allows. Fix: set rotationPolicy.periodDays to 60 or less.',
      '[stack/theirs] [MasterKey-MaxRotationPeriod] rotationPolicy.periodDays is 90 days, longer than the 60 days the policy allows. Fix: set rotationPolicy.periodDays to 60 or less.',
    ]);
    expect(messages(stack, 'warn').sort()).toEqual([expect.stringMatching(/^\[stack\/mine\] \[MasterKey-HealthCheck\] /), expect.stringMatching(/^\[stack\/theirs\] \[MasterKey-HealthCheck\] /)]);
  });
});
