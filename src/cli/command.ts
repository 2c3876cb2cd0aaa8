/** What every `lockstep` subcommand module exports. */
export interface Command {
  /** Usage text printed by --help (first line: the synopsis). */
  help: string;
  /** Runs with the arguments after the command name; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
}
