/** Bad policy input: one line per problem, each naming file, document and field. */
import { UserError } from '../../common/errors';

/** Lines kept in the message; the rest are counted, so a broken file cannot flood a terminal. */
const MAX_LINES = 50;

export class PolicyError extends UserError {
  /** Every problem found, one line each (the message may shorten the list). */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    const shown = problems.slice(0, MAX_LINES);
    if (problems.length > MAX_LINES) shown.push(`... and ${problems.length - MAX_LINES} more problems`);
    super(shown.join('\n'));
    this.name = 'PolicyError';
    this.problems = problems;
  }
}
