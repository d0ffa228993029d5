/**
 * Clean-ups that must run however this process ends: at exit, and on
 * SIGINT, SIGTERM or SIGHUP that nothing else handles (then the signal is
 * raised again once they ran, so the process still ends by it). Used for
 * the embedded PostgreSQL servers a process started (not detached ones: a
 * server is a daemon of pg_ctl and would otherwise outlive it) and for the
 * scratch directories of tests and harnesses.
 */
const atExitHooks = new Set<() => void>();
let exitHookInstalled = false;
function runExitHooks(): void {
  for (const h of atExitHooks) {
    try {
      h();
    } catch {
      // an exit hook must not keep the others from running
    }
  }
  atExitHooks.clear();
}
/** Runs `hook` (synchronous, once) however the process ends; the function returned forgets it (its owner cleaned up by itself). */
export function atExit(hook: () => void): () => void {
  atExitHooks.add(hook);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', runExitHooks);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const onSignal = (): void => {
        // Someone else handles this signal (e.g. the demo waiting for Ctrl-C): they end the process, and 'exit' runs the hooks.
        if (process.listenerCount(sig) > 1) return;
        runExitHooks();
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      };
      process.on(sig, onSignal);
    }
  }
  return () => atExitHooks.delete(hook);
}
