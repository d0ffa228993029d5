/**
 * How each surface names the settings in its sentences, so that a refusal
 * names the option or argument the user wrote: `--database-url-env NAME` on
 * the CLI, `database_url_env = "NAME"` in terraform. A rotation on another
 * host is told which surface runs it and words its sentences the same way.
 * (No imports: the provider loads this for validation, before any rotation code.)
 */
/** How a surface names the settings in its sentences: `--database-url-env NAME` on the CLI, `database_url_env = "NAME"` in terraform. */
export interface Spelling {
  /** Which surface this is (sent to another host, whose sentences then name the same settings). */
  readonly surface: 'cli' | 'terraform';
  /** The setting that names the environment variable, with a value when given. */
  databaseUrlEnv(name?: string): string;
  /** The setting that names the config entry, with a value when given. */
  databaseUrlEntry(name?: string): string;
  /** The setting that names backup recipients: `--backup-recipient`, `backup_recipients`. */
  readonly backupRecipient: string;
  /** Where the user exports an environment variable, e.g. " in the shell that runs terraform" (or ""). */
  readonly exportWhere: string;
}

/** How the CLI names the settings in its sentences. */
export const CLI_SPELLING: Spelling = {
  surface: 'cli',
  databaseUrlEnv: (name) => (name ? `--database-url-env ${name}` : '--database-url-env'),
  databaseUrlEntry: (name) => (name ? `--database-url-entry ${name}` : '--database-url-entry'),
  backupRecipient: '--backup-recipient',
  exportWhere: '',
};

/** How terraform users name the settings: by the arguments of the resource and the data source. */
export const TERRAFORM_SPELLING: Spelling = {
  surface: 'terraform',
  databaseUrlEnv: (name) => (name ? `database_url_env = "${name}"` : 'database_url_env'),
  databaseUrlEntry: (name) => (name ? `database_url_entry = "${name}"` : 'database_url_entry'),
  backupRecipient: 'backup_recipients element',
  exportWhere: ' in the shell that runs terraform',
};
