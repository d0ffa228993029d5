/**
 * Database URLs before the network (the cases fuzzing found, written out):
 * what plans, reports and messages show of a PostgreSQL URL, never its
 * password, and how a URL that cannot be read is refused.
 */
import { describeUrl } from '../src/store/postgres/client';
import { caught } from './support/errors';
import { resolveStoreUrl } from '../src/store/open';

describe('describeUrl', () => {
  it.each([
    ['postgres://act:s3cret@db:5432/act', 'act@db:5432/act'],
    ['postgresql://db/act', 'db/act'],
    ['POSTGRES://act@db/act', 'act@db/act'],
    ['postgres://a%40b:s3cret@db/act', 'a@b@db/act'],
  ])('%s is shown as %s', (url, shown) => {
    expect(describeUrl(url)).toBe(shown);
  });

  it.each([
    ['the scheme left out', 'act:s3cret@db/act'],
    ['the // left out', 'postgres:act:s3cret@db/act'],
    ['a typo in the scheme', 'postgres:/act:s3cret@db/act'],
  ])('with %s, the URL is not described at all (its path would hold the password)', (_what, url) => {
    expect(describeUrl(url)).toBe('the database (its URL does not start with postgres://)');
  });
});

describe('sqlite: URLs', () => {
  it('a URL that is not a SQLite file URL is quoted as JSON: a line break cannot split the message', () => {
    const e = caught(() => resolveStoreUrl('sqlite://:\r\n//var/lib/act.db', '/etc/act'));
    expect(e.code).toBe('USAGE');
    expect(e.message).toBe('The database URL "sqlite://:\\r\\n//var/lib/act.db" is not a SQLite file URL; write sqlite:/absolute/path/act.db, or sqlite:path/act.db relative to the config file\'s directory.');
  });
});
