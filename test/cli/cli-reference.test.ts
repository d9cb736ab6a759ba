/** docs/cli.md is the commands' own help text: a flag added, renamed or re-described without regenerating it fails here. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CLI_REFERENCE_PATH, renderCliReference } from '../../src/cli/cli-reference';
import { buildProgram } from '../../src/cli/main';

test('docs/cli.md matches the help of every command (regenerate with `npm run docs:cli`)', () => {
  const expected = renderCliReference();
  const actual = readFileSync(CLI_REFERENCE_PATH, 'utf8');
  if (actual !== expected) {
    const a = actual.split('\n');
    const e = expected.split('\n');
    const i = e.findIndex((line, n) => line !== a[n]);
    assert.fail(`docs/cli.md is out of date at line ${i + 1}:\n  file:      ${JSON.stringify(a[i])}\n  generated: ${JSON.stringify(e[i])}\nrun \`npm run docs:cli\` and commit docs/cli.md`);
  }
});

test('every command and every one of its options is in docs/cli.md', () => {
  const doc = readFileSync(CLI_REFERENCE_PATH, 'utf8');
  const walk = (cmd: ReturnType<typeof buildProgram>, prefix: string): number => {
    let n = 0;
    for (const sub of cmd.commands) {
      const name = `${prefix} ${sub.name()}`;
      assert.ok(doc.includes(`## ${name}\n`), `${name} has a section`);
      const section = doc.slice(doc.indexOf(`## ${name}\n`)).split('\n## ')[0];
      for (const opt of sub.options) if (!opt.hidden) assert.ok(section.includes(opt.long ?? opt.short!), `${name} documents ${opt.flags}`);
      n += 1 + walk(sub, name);
    }
    return n;
  };
  assert.ok(walk(buildProgram(), 'citadel') >= 30, 'the walk saw the commands');
});
