/** Jest runs the TypeScript sources through swc; @noble/ciphers and age-encryption (ESM-only, with its @noble and @scure dependencies) are transformed too. */
const swc = ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }];

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.(t|j)s$': swc },
  transformIgnorePatterns: ['/node_modules/(?!(@noble|@scure|age-encryption)/)'],
  // In the checkout, not in /tmp: the run must leave nothing new in the temp directory (test/support/tmp-guard.ts).
  cacheDirectory: '<rootDir>/node_modules/.cache/jest',
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  setupFilesAfterEnv: ['<rootDir>/test/support/scratch-cleanup.ts'],
  testTimeout: 60000,
  maxWorkers: 2,
};
