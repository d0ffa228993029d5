/**
 * The engine adapter (`./engine.ts`), loaded on first use: terraform
 * launches the provider several times per command, mostly for schemas and
 * validation, which need neither the engine nor a database driver.
 */
let engineModule: typeof import('./engine') | undefined;

export const engine = (): typeof import('./engine') => (engineModule ??= require('./engine') as typeof import('./engine'));
