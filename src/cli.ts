// The `shuttle` command line: parses argv, loads the config, dispatches to a command and returns its exit
// status. No side effects on import; bin/shuttle.js calls `main` and sets process.exitCode.

import { parseArgs } from 'node:util';
import { checkConfig } from './check-config.js';
import { ConfigError, type ShuttleConfig } from './config.js';
import { loadConfig } from './config-load.js';

const COMMANDS = ['run', 'check-config', 'verify-permissions', 'scanner-test', 'status', 'audit', 'install'] as const;
type Command = (typeof COMMANDS)[number];

/** The flags each command accepts besides --config and --help. */
const COMMAND_FLAGS: Record<Command, readonly ('fix' | 'json' | 'prefix')[]> = {
  run: [],
  'check-config': [],
  'verify-permissions': ['fix', 'json'],
  'scanner-test': [],
  status: ['json'],
  audit: ['json'],
  install: ['prefix'],
};

/** Commands that work without a config. */
const WITHOUT_CONFIG: readonly Command[] = ['install'];

/** Commands that take a subcommand, and the subcommands they know. */
const SUBCOMMANDS: Partial<Record<Command, readonly string[]>> = {
  audit: ['verify'],
};

export const USAGE = `Usage: shuttle <command> --config FILE [options]

Commands:
  run                  run the daemon in the foreground (systemd starts it this way)
  check-config         validate the config and the environment it needs
  verify-permissions   compare every managed path with the permission model
  scanner-test         scan a clean file and the EICAR test string with each enabled scanner
  status               show what the running daemon is doing
  audit verify         check the hash chain of the audit log (exit 1 when it is broken)
  install              install the program, the systemd unit, sysusers/tmpfiles files and the config example

Options:
  --config FILE        the YAML configuration file (required by every command but install)
  --fix                verify-permissions: repair what differs from the model
  --json               verify-permissions, status, audit verify: print JSON instead of a table
  --prefix DIR         install: the root to install under, as DESTDIR (default /)
  -h, --help           show this help

Exit status 2 means the command could not do its job (bad usage, bad config, failed check).
`;

/** Exit status for usage errors, bad configs and failed checks. */
const EXIT_UNUSABLE = 2;
const EXIT_FAILURE = 1;

class UsageError extends Error {}

interface Invocation {
  command: Command;
  subcommand: string | null;
  configFile: string;
  fix: boolean;
  json: boolean;
  prefix: string;
}

export async function main(argv: readonly string[]): Promise<number> {
  let invocation: Invocation | 'help';
  try {
    invocation = parseInvocation(argv);
  } catch (error) {
    if (!(error instanceof UsageError) && !isParseArgsError(error)) throw error;
    writeError(`shuttle: ${(error as Error).message}\n\n${USAGE}`);
    return EXIT_UNUSABLE;
  }
  if (invocation === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }

  try {
    return await dispatch(invocation);
  } catch (error) {
    if (error instanceof ConfigError) {
      writeError(`${error.message}\n`);
      return EXIT_UNUSABLE;
    }
    writeError(`shuttle ${invocation.command}: ${error instanceof Error ? error.message : String(error)}\n`);
    return invocation.command === 'run' ? EXIT_FAILURE : EXIT_UNUSABLE;
  }
}

function parseInvocation(argv: readonly string[]): Invocation | 'help' {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string' },
      fix: { type: 'boolean' },
      json: { type: 'boolean' },
      prefix: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';

  const [name, ...extra] = positionals;
  if (name === undefined) throw new UsageError('no command given');
  if (!isCommand(name)) throw new UsageError(`unknown command "${name}"`);
  const known = SUBCOMMANDS[name];
  const subcommand = known === undefined ? null : (extra.shift() ?? null);
  if (known !== undefined && (subcommand === null || !known.includes(subcommand))) {
    throw new UsageError(subcommand === null ? `${name}: expected a subcommand: ${known.join(', ')}` : `${name}: unknown subcommand "${subcommand}"`);
  }
  if (extra.length > 0) throw new UsageError(`${name}: unexpected argument "${extra[0]}"`);
  for (const flag of ['fix', 'json', 'prefix'] as const) {
    if (values[flag] && !COMMAND_FLAGS[name].includes(flag)) {
      throw new UsageError(`${name}: --${flag} is not an option of this command`);
    }
  }
  if (WITHOUT_CONFIG.includes(name)) {
    if (values.config !== undefined) throw new UsageError(`${name}: --config is not an option of this command`);
  } else if (values.config === undefined || values.config === '') {
    throw new UsageError(`${name}: --config FILE is required`);
  }
  return {
    command: name,
    subcommand,
    configFile: values.config ?? '',
    fix: values.fix ?? false,
    json: values.json ?? false,
    prefix: values.prefix ?? '/',
  };
}

async function dispatch(invocation: Invocation): Promise<number> {
  switch (invocation.command) {
    case 'run': {
      const config = await loadConfig(invocation.configFile);
      return runDaemon(config);
    }
    case 'check-config': {
      const config = await loadConfig(invocation.configFile);
      return checkConfig(config, (line) => process.stdout.write(`${line}\n`));
    }
    case 'scanner-test': {
      const config = await loadConfig(invocation.configFile);
      const { scannerTest } = await import('./scanner-test.js');
      return scannerTest(config, (line) => process.stdout.write(`${line}\n`));
    }
    case 'audit': {
      const config = await loadConfig(invocation.configFile);
      const { auditVerify } = await import('./audit-verify.js');
      return auditVerify(config, (line) => process.stdout.write(`${line}\n`), { json: invocation.json });
    }
    case 'verify-permissions': {
      const config = await loadConfig(invocation.configFile);
      const { runVerifyPermissions } = await import('./permissions/verify.js');
      return runVerifyPermissions(config, { fix: invocation.fix, json: invocation.json });
    }
    case 'status': {
      const config = await loadConfig(invocation.configFile);
      const { statusCommand } = await import('./status-client.js');
      return statusCommand(config, { json: invocation.json });
    }
    case 'install': {
      const { installCommand } = await import('./install.js');
      return installCommand(invocation.prefix);
    }
  }
}

/** Imported only for `run`, so the admin commands never load the pipeline. */
async function runDaemon(config: ShuttleConfig): Promise<number> {
  const daemon = await import('./daemon.js');
  return daemon.runDaemon(config);
}

function isCommand(name: string): name is Command {
  return (COMMANDS as readonly string[]).includes(name);
}

/** parseArgs reports unknown options and missing values as TypeErrors with ERR_PARSE_ARGS_* codes. */
function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

function writeError(text: string): void {
  process.stderr.write(text);
}
