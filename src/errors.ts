/**
 * Typed errors. Every failure the tool reports has a stable `code` (for
 * pipelines and tests), one clear sentence plus what to do (the message), and
 * a documented process exit code. Messages never contain key material.
 */

/** Process exit codes, documented in the README. */
export const ExitCode = {
  OK: 0,
  /** Unexpected internal error (a bug): please report it. */
  INTERNAL: 1,
  /** `plan --detailed-exitcode` only: a rotation is pending (as terraform's 2). */
  CHANGES: 2,
  /** Bad command-line usage. */
  USAGE: 3,
  /** A key could not be used: malformed, or the same as the old one. */
  BAD_KEY: 4,
  /** The database does not match the key: wrong old key, or no/duplicate canary. */
  KEY_MISMATCH: 5,
  /** Stored secrets do not open (before a rotation) or verification failed. */
  UNDECRYPTABLE: 6,
  /** The database cannot be reached, is read-only, lacks a privilege the rotation needs, is busy (a lock held beyond the lock timeout), or failed. */
  DATABASE: 7,
  /** A config, backup, report or pending file cannot be read or written. */
  FILES: 8,
  /** Another rotation holds the lock on this database. */
  LOCKED: 9,
  /** An interrupted rotation was found: run `master-key recover`. */
  INTERRUPTED: 10,
  /** `status --max-age`: the key is older than allowed. */
  OVERDUE: 11,
  /** A saved plan no longer matches the database or config. */
  STALE_PLAN: 12,
  /** `status`: at least one node's config holds a different key than the database. */
  NODE_MISMATCH: 13,
  /** A stop/start/health-check hook command failed. */
  HOOK_FAILED: 14,
  /** A host could not be reached or trusted over SSH: unknown or changed host key, login refused, unreachable or timed out. Nothing ran there. */
  HOST: 15,
  /** The master-key on another host cannot run this command: missing, another version, or it failed to start. */
  REMOTE: 16,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

const CODES = {
  USAGE: ExitCode.USAGE,
  KEY_MALFORMED: ExitCode.BAD_KEY,
  KEY_SAME: ExitCode.BAD_KEY,
  RECIPIENT_INVALID: ExitCode.BAD_KEY,
  IDENTITY_INVALID: ExitCode.BAD_KEY,
  OLD_KEY_INCORRECT: ExitCode.KEY_MISMATCH,
  CANARY_NOT_FOUND: ExitCode.KEY_MISMATCH,
  CANARY_EXISTS: ExitCode.KEY_MISMATCH,
  KEY_NOT_FOR_DATABASE: ExitCode.KEY_MISMATCH,
  IDENTITY_MISMATCH: ExitCode.KEY_MISMATCH,
  SEALED_MALFORMED: ExitCode.UNDECRYPTABLE,
  SEALED_TRUNCATED: ExitCode.UNDECRYPTABLE,
  SEALED_UNKNOWN_KEY: ExitCode.UNDECRYPTABLE,
  SEALED_TAMPERED: ExitCode.UNDECRYPTABLE,
  SEALED_WRONG_KEY: ExitCode.UNDECRYPTABLE,
  UNDECRYPTABLE_ROWS: ExitCode.UNDECRYPTABLE,
  VERIFY_FAILED: ExitCode.UNDECRYPTABLE,
  DB_UNREACHABLE: ExitCode.DATABASE,
  DB_READ_ONLY: ExitCode.DATABASE,
  DB_BUSY: ExitCode.DATABASE,
  TABLES_BUSY: ExitCode.DATABASE,
  DB_PRIVILEGE_MISSING: ExitCode.DATABASE,
  DB_ERROR: ExitCode.DATABASE,
  INVENTORY_INVALID: ExitCode.DATABASE,
  CONFIG_MISSING: ExitCode.FILES,
  CONFIG_UNREADABLE: ExitCode.FILES,
  CONFIG_INVALID: ExitCode.FILES,
  CONFIG_KEY_MISSING: ExitCode.FILES,
  CONFIG_KEY_DUPLICATE: ExitCode.FILES,
  CONFIG_SYMLINK: ExitCode.FILES,
  CONFIG_UNWRITABLE: ExitCode.FILES,
  CONFIG_DISAGREE: ExitCode.FILES,
  BACKUP_UNWRITABLE: ExitCode.FILES,
  BACKUP_CORRUPT: ExitCode.FILES,
  DISK_FULL: ExitCode.FILES,
  FILE_ERROR: ExitCode.FILES,
  IDENTITY_REQUIRED: ExitCode.FILES,
  IDENTITY_UNSAFE: ExitCode.FILES,
  LOCKED: ExitCode.LOCKED,
  ROTATION_INTERRUPTED: ExitCode.INTERRUPTED,
  KEY_OVERDUE: ExitCode.OVERDUE,
  PLAN_STALE: ExitCode.STALE_PLAN,
  NODE_MISMATCH: ExitCode.NODE_MISMATCH,
  HOOK_FAILED: ExitCode.HOOK_FAILED,
  HOST_KEY_UNKNOWN: ExitCode.HOST,
  HOST_KEY_MISMATCH: ExitCode.HOST,
  SSH_AUTH_FAILED: ExitCode.HOST,
  HOST_UNREACHABLE: ExitCode.HOST,
  REMOTE_VERSION_MISMATCH: ExitCode.REMOTE,
  REMOTE_COMMAND_FAILED: ExitCode.REMOTE,
  INTERNAL: ExitCode.INTERNAL,
} as const;

export type ErrorCode = keyof typeof CODES;

/** The exit code the CLI uses for an error code. */
export function exitCodeFor(code: ErrorCode): ExitCodeValue {
  return CODES[code];
}

/** All error codes with their exit codes (for the README table and tests). */
export function errorCodeTable(): ReadonlyArray<[ErrorCode, ExitCodeValue]> {
  return Object.entries(CODES) as Array<[ErrorCode, ExitCodeValue]>;
}

export class MasterKeyError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCodeValue;
  /** Non-secret structured details for `--json` output. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MasterKeyError';
    this.code = code;
    this.exitCode = exitCodeFor(code);
    this.details = details;
  }
}

export function isMasterKeyError(e: unknown, code?: ErrorCode): e is MasterKeyError {
  return e instanceof MasterKeyError && (code === undefined || e.code === code);
}
