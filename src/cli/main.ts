import { Command, CommanderError } from 'commander';
import { UserError, errorMessage } from '../common/errors';
import { COMMANDS } from './commands';
import { PACKAGE_VERSION } from '../common/package-root';

/**
 * `citadel <command>`. Exit codes: 0 success; 1 a check failed (e.g. `cert verify` found a
 * problem); 2 usage or input error (one line on stderr); 3 internal error.
 */
export function buildProgram(): Command {
  const program = new Command('citadel')
    .description('Istio Citadel for Mesos/Marathon: per-workload SPIFFE certificates that rotate by themselves')
    .version(PACKAGE_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (text, write) => write(`citadel: ${text.replace(/^error: /, '')}`) })
    .exitOverride();
  for (const register of COMMANDS) register(program);
  // Subcommands inherit the error format and exit override, so every usage error is one line and exit 2.
  const inherit = (cmd: Command) => {
    for (const sub of cmd.commands) {
      sub.configureOutput({ outputError: (text, write) => write(`citadel: ${text.replace(/^error: /, '')}`) }).exitOverride().showHelpAfterError('(run with --help for usage)');
      inherit(sub);
    }
  };
  inherit(program);
  return program;
}

/**
 * A reader that goes away (`citadel store list | head -1`) ends the command quietly with exit 0,
 * as the classic Unix tools do, not with an EPIPE stack trace.
 */
function quietOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

export async function main(argv: string[]): Promise<number> {
  quietOnClosedStdout();
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version arrive here with exit code 0; usage mistakes with 1: we report 2.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`citadel: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`citadel: internal error: ${errorMessage(err)}\n`);
    if (process.env.CITADEL_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`);
    return 3;
  }
}

if (require.main === module || require.main?.filename.endsWith('/bin/citadel')) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
