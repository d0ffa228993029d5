/**
 * Durations (`status --max-age`): days, weeks, hours and years; `m` is
 * refused, since readers take it for minutes as often as for months.
 */
import { parseDuration } from '../src/rotation/decide';
import { ExitCode } from '../src/errors';
import { actScenario } from './support/scenario';

const DAY = 86_400_000;

describe('parseDuration', () => {
  it('reads d, w, h, y and plain days', () => {
    expect(parseDuration('90d')).toBe(90 * DAY);
    expect(parseDuration('12w')).toBe(84 * DAY);
    expect(parseDuration('36h')).toBe(1.5 * DAY);
    expect(parseDuration('1y')).toBe(365 * DAY);
    expect(parseDuration(' 30 ')).toBe(30 * DAY);
    expect(parseDuration('2D')).toBe(2 * DAY);
  });

  it('refuses m (minutes or months?) and anything else', () => {
    for (const t of ['3m', '90M', '5min', '1mo', 'soon', '', '-3d', '3 days']) expect(parseDuration(t)).toBeUndefined();
  });
});

describe('status --max-age', () => {
  it('refuses 3m as bad usage, naming the accepted forms', async () => {
    const s = await actScenario({ perKind: 1 });
    const r = s.cli(['status', '--max-age', '3m']);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('"3m"');
    expect(r.stderr).toMatch(/365d, 12w, 48h or 1y/);
  });
});
