/**
 * Config file formats (pure, no I/O): read one entry's value from a config
 * text and replace just that value, leaving every other character as it was.
 * Errors name the file (`label`), the entry and line numbers; never contents.
 */
import { extname } from 'node:path';
import { locateDotenv } from './dotenv';
import { locateJson } from './json';
import { Located } from './located';
import { locateXml } from './xml';

export type ConfigFormat = 'dotenv' | 'json' | 'xml';

/** Every supported format. */
export const CONFIG_FORMATS: readonly ConfigFormat[] = ['dotenv', 'json', 'xml'];

/** The format implied by a file name: `.json` -> json, `.xml`/`.config` -> xml, anything else -> dotenv. */
export function formatFromPath(path: string): ConfigFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.xml' || ext === '.config') return 'xml';
  return 'dotenv';
}

/** Type guard for a format name given on the command line or in props. */
export function isConfigFormat(s: string): s is ConfigFormat {
  return (CONFIG_FORMATS as readonly string[]).includes(s);
}

const LOCATORS: Readonly<Record<ConfigFormat, (text: string, entry: string, label: string) => Located>> = {
  dotenv: locateDotenv,
  json: locateJson,
  xml: locateXml,
};

/**
 * Returns the entry's raw value. Errors: CONFIG_KEY_MISSING,
 * CONFIG_KEY_DUPLICATE, CONFIG_INVALID (e.g. unparsable JSON/XML), USAGE for
 * an entry name the format cannot express. `label` names the file in messages.
 */
export function readEntry(text: string, format: ConfigFormat, entry: string, label: string): string {
  return LOCATORS[format](text, entry, label).value;
}

/** Returns text with only that entry's value replaced by newValue (same errors). */
export function replaceEntry(text: string, format: ConfigFormat, entry: string, newValue: string, label: string): string {
  const at = LOCATORS[format](text, entry, label);
  return text.slice(0, at.start) + at.encode(newValue) + text.slice(at.end);
}
