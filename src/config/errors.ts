// Typed errors with stable codes; tests compare codes, never message text.

export interface PolicyProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

export function formatProblem(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.message}`;
}

/** A policy file that cannot be loaded: every problem found, each with its position. */
export class PolicyError extends Error {
  readonly code = 'PORTCULLIS_POLICY_INVALID';
  readonly problems: readonly PolicyProblem[];
  constructor(problems: readonly PolicyProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'PolicyError';
    this.problems = problems;
  }
}
