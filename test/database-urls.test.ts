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
  it.each([
    ['sqlite://:\r\n//var/lib/act.db', 'a host part (sqlite://...)'],
    ['sqlite://act:s3cret@db/act', 'a host part (sqlite://...)'],
    ['sqlite:\u0000postgres://act:s3cret@db/act', 'a NUL character'],
    ['sqlite::memory:', 'an in-memory database'],
    ['sqlite:', 'no path'],
  ])('%j is refused without being quoted (a line break would split the message, a password would show)', (url, why) => {
    const e = caught(() => resolveStoreUrl(url, '/etc/act'));
    expect(e.code).toBe('USAGE');
    expect(e.message).toBe(`The sqlite: database URL names ${why}, not a SQLite file; write sqlite:/absolute/path/act.db, or sqlite:path/act.db relative to the config file's directory.`);
  });
});
