/** `-f FILE|DIR`: reads policy files (a directory: its *.yaml, *.yml and *.json, sorted) and parses them all at once. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { errorMessage } from '../../common/errors';
import { displayFile } from './issues';
import { parsePolicySources, type ParsedPolicies, type PolicySource } from './parse';
import { PolicyError } from './policy-error';

const POLICY_FILE = /\.(ya?ml|json)$/i;

/** Every file named, or found in a directory named (not recursively), parsed together; throws PolicyError. */
export async function loadPolicyFiles(paths: readonly string[]): Promise<ParsedPolicies> {
  const problems: string[] = [];
  const sources: PolicySource[] = [];
  for (const p of paths) {
    for (const file of await filesOf(p, problems)) {
      try {
        sources.push({ file, text: await fs.readFile(file, 'utf8') });
      } catch (err) {
        problems.push(`${displayFile(file)}: cannot read: ${errorMessage(err)}`);
      }
    }
  }
  if (problems.length > 0) throw new PolicyError(problems);
  return parsePolicySources(sources);
}

async function filesOf(p: string, problems: string[]): Promise<string[]> {
  let stat;
  try {
    stat = await fs.stat(p);
  } catch (err) {
    problems.push(`${displayFile(p)}: cannot read: ${errorMessage(err)}`);
    return [];
  }
  if (!stat.isDirectory()) return [p];
  try {
    const entries = await fs.readdir(p, { withFileTypes: true });
    return entries
      .filter((e) => !e.isDirectory() && POLICY_FILE.test(e.name))
      .map((e) => e.name)
      .sort()
      .map((name) => path.join(p, name));
  } catch (err) {
    problems.push(`${displayFile(p)}: cannot list: ${errorMessage(err)}`);
    return [];
  }
}
