/**
 * Turning an argument vector into the `command` string of a terraform
 * `local-exec` provisioner: every argument is quoted for `/bin/sh -c`, and the
 * result is escaped so that terraform's template language leaves it alone.
 */

const SAFE = /^[A-Za-z0-9_\-.,:/=@+]+$/;

/** Quotes one argument for a POSIX shell (single quotes; `'` becomes `'\''`). */
export function shellQuote(arg: string): string {
  if (arg.length > 0 && SAFE.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Quotes every argument and joins them with spaces. */
export function shellCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/**
 * Escapes text for a terraform template string: a literal `${` is written
 * `$${` and a literal `%{` is written `%%{`; nothing else is special.
 */
export function escapeTerraformTemplate(text: string): string {
  return text.replace(/\$\{/g, () => '$${').replace(/%\{/g, () => '%%{');
}

/** A shell command line that terraform passes to `/bin/sh -c` unchanged. */
export function localExecCommand(argv: readonly string[]): string {
  return escapeTerraformTemplate(shellCommand(argv));
}
