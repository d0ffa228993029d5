/**
 * A progress bar (cli-progress) on stderr for long work on a terminal; silent
 * when stderr is not a terminal, in CI, or with --json.
 */
import { SingleBar, Presets } from 'cli-progress';
import { Progress, quietProgress } from '../rotation/context';

export function terminalProgress(enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY || process.env.CI) return quietProgress;
  let bar: SingleBar | undefined;
  let counter = false;
  return {
    start(label, total) {
      counter = total === undefined;
      bar = new SingleBar(
        {
          stream: process.stderr,
          format: counter ? `${label} | {value} secrets | {duration_formatted}` : `${label} |{bar}| {percentage}% | {value}/{total} | ETA {eta_formatted}`,
          hideCursor: true,
          clearOnComplete: true,
        },
        Presets.shades_classic,
      );
      bar.start(total ?? 0, 0);
    },
    tick(n) {
      bar?.update(n);
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
