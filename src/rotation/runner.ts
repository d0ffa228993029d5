/**
 * Runs a runbook: an ordered list of named phases over one state. The
 * runner owns what every phase needs the same way: the fault points a
 * crash test kills at (reached as a phase starts and when it is done), the
 * timings of the report's table, and what happens on failure (each phase
 * that declares `undo` is asked, latest first, to secure what it did and
 * to say which error to report).
 */
import { Context } from './context';
import { FaultPoint } from './faults';

/** One named step of a runbook over state S. */
export interface Phase<S> {
  /** What it does, in a few words. */
  readonly name: string;
  /** The row of the report's timings its time adds to (several phases may share one); untimed when absent. */
  readonly timing?: string;
  /** Fault point reached before it runs. */
  readonly starts?: FaultPoint;
  /** Fault point reached when it is done. */
  readonly done?: FaultPoint;
  /** Does the work; 'stop' ends the runbook here, successfully. */
  run(s: S, rt: Runtime): Promise<void | 'stop'> | void | 'stop';
  /**
   * When this phase or a later one fails: secures what this phase did (it
   * may have failed part-way) and returns the error to report, the same
   * one or a clearer one.
   */
  undo?(s: S, error: unknown): Promise<unknown> | unknown;
}

/** What a running phase gets from the runner. */
export interface Runtime {
  /** Marks a fault point inside a phase (a crash test may kill the process there). */
  reached(point: FaultPoint): void;
  /** Milliseconds per timing row so far, in the order first timed. */
  readonly timings: Readonly<Record<string, number>>;
}

export class Runner implements Runtime {
  private readonly laps: Record<string, number> = {};
  private lapStart = Date.now();

  /** The clock starts now: time before the first phase (e.g. connecting) counts towards it. */
  constructor(private readonly ctx: Pick<Context, 'faults'>) {}

  get timings(): Readonly<Record<string, number>> {
    return this.laps;
  }

  reached(point: FaultPoint): void {
    this.ctx.faults.reached(point);
  }

  /** Runs the phases in order; on failure, runs the undo of the failed phase and of every earlier one, latest first, and throws what they return. */
  async run<S>(phases: readonly Phase<S>[], s: S): Promise<void> {
    for (let i = 0; i < phases.length; i++) {
      const p = phases[i];
      let outcome: void | 'stop';
      try {
        if (p.starts) this.reached(p.starts);
        outcome = await p.run(s, this);
      } catch (e) {
        throw await this.undo(phases.slice(0, i + 1), s, e);
      }
      if (p.done) this.reached(p.done);
      this.lap(p.timing);
      if (outcome === 'stop') return;
    }
  }

  private async undo<S>(started: readonly Phase<S>[], s: S, error: unknown): Promise<unknown> {
    let e = error;
    for (const p of [...started].reverse()) if (p.undo) e = await p.undo(s, e);
    return e;
  }

  /** Adds the time since the last lap to `timing` (or drops it for an untimed phase). */
  private lap(timing: string | undefined): void {
    const now = Date.now();
    if (timing) this.laps[timing] = (this.laps[timing] ?? 0) + (now - this.lapStart);
    this.lapStart = now;
  }
}
