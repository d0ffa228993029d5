/**
 * The provider's seam to the rotation (`./rotation-seam.ts`), loaded on
 * first use: terraform launches the provider several times per command,
 * mostly for schemas and validation, which need neither the rotation code
 * nor a database driver.
 */
let seamModule: typeof import('./rotation-seam') | undefined;

export const rotationSeam = (): typeof import('./rotation-seam') => (seamModule ??= require('./rotation-seam') as typeof import('./rotation-seam'));
