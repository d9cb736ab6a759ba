import type { Command } from 'commander';

/** Each command registers itself on the program; one file per command group. */
export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [];
