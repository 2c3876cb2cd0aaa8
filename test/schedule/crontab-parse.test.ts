/**
 * The crontab parser (src/schedule/crontab.ts) and `lockstep crontab --test`:
 * Debian's own example file from crontab(5), and 20 malformed lines, each
 * refused with exit 2 and its FILE:LINE.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCrontab, splitPercent, CrontabSyntaxError } from '../../src/schedule/crontab.js';
import { escapeLabelValue, formatExposition } from '../../src/cli/prometheus.js';
import { runCli } from '../support/cli.js';

const parse = (text: string, defaultTz = 'UTC') => parseCrontab(text, { source: 'ct', defaultTz });

/** The EXAMPLE CRON FILE of Debian's crontab(5) (cron 3.0pl1), verbatim. */
const DEBIAN_EXAMPLE = `
# use /bin/sh to run commands, no matter what /etc/passwd says
SHELL=/bin/sh
# mail any output to \`paul', no matter whose crontab this is
MAILTO=paul
#
# run five minutes after midnight, every day
5 0 * * *       $HOME/bin/daily.job >> $HOME/tmp/out 2>&1
# run at 2:15pm on the first of every month -- output mailed to paul
15 14 1 * *     $HOME/bin/monthly
# run at 10 pm on weekdays, annoy Joe
0 22 * * 1-5\tmail -s "It's 10pm" joe%Joe,%%Where are your kids?%
23 0-23/2 * * * echo "run 23 minutes after midn, 2am, 4am ..., everyday"
5 4 * * sun     echo "run at 5 after 4 every sunday"
# Run once every 9th day, even across week, month, and year boundaries:
33 22 * * *     expr $(date +\\%s) / 60 / 60 / 24 \\% 9 > /dev/null || echo Wax the floor.
`;

/** Each is refused; the comment says why. */
const MALFORMED = [
  '* * * *', // too few fields, no command
  '* * * * *', // no command
  '61 * * * * cmd', // minute out of range
  '* 24 * * * cmd', // hour out of range
  '* * 32 * * cmd', // day of month out of range
  '* * * 13 * cmd', // month out of range
  '* * * * 8 cmd', // day of week out of range
  '5-1 * * * * cmd', // reversed range
  '*/0 * * * * cmd', // step 0
  '1,,2 * * * * cmd', // empty list item
  'abc * * * * cmd', // not a number
  '0 0 30 2 * cmd', // 30 February: never
  '@sometimes cmd', // unknown @ form
  '@daily', // @ form without a command
  'CRON_TZ=Mars/Olympus_Mons', // unknown zone
  'GREETING="hello', // unterminated quote
  '# overlap: sometimes', // bad overlap policy
  '# name: two words', // bad name
  '0 0 * * * * 2027 cmd', // a 7th (year) field
  'SHELL=bash', // shell not given as a path
];

describe('schedule/crontab-parse: the crontab format and --test', function () {
  this.timeout(30_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'lockstep-crontab-parse-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads 5 fields (second 0), 6 fields (seconds first) and every @ form', () => {
    const { entries } = parse(
      ['*/5 * * * * a', '10 0 12 * * 1-5 b', '*/2 * * * * * c', '0 * * * * sun d', '@hourly e', '@daily f', '@midnight g', '@weekly h', '@monthly i', '@yearly j', '@annually k', '@reboot l'].join('\n'),
    );
    expect(entries.map((e) => [e.expression ?? '@reboot', e.command])).to.deep.equal([
      ['0 */5 * * * *', 'a'],
      ['10 0 12 * * 1-5', 'b'],
      ['*/2 * * * * *', 'c'],
      ['0 * * * * sun', 'd'], // 6th word 'sun' is a day-of-week field: 6 fields
      ['0 0 * * * *', 'e'],
      ['0 0 0 * * *', 'f'],
      ['0 0 0 * * *', 'g'],
      ['0 0 0 * * 0', 'h'],
      ['0 0 0 1 * *', 'i'],
      ['0 0 0 1 1 *', 'j'],
      ['0 0 0 1 1 *', 'k'],
      ['@reboot', 'l'],
    ]);
    expect(entries.map((e) => e.name)).to.deep.equal(entries.map((e) => `line-${e.line}`));
  });

  it("takes KEY=value lines as Debian does (optional blanks, quotes keep blanks, no expansion), CRON_TZ, names and overlap comments", () => {
    const { entries } = parse(
      [
        'A = plain value  ',
        "B='  kept  '",
        'C="$HOME"',
        'D=',
        '* * * * * * one',
        'CRON_TZ=Asia/Kolkata',
        'A=changed',
        '# a comment that is not lockstep\'s',
        '# name: backup',
        '# overlap: allow',
        '0 12 * * * two # not a comment: part of the command',
      ].join('\n'),
    );
    expect(entries[0]!.env).to.deep.equal({ A: 'plain value', B: '  kept  ', C: '$HOME', D: '' });
    expect(entries[0]!.tz).to.equal('UTC');
    expect(entries[0]!.overlap).to.equal('skip');
    expect(entries[1]!).to.include({ name: 'backup', explicitName: true, tz: 'Asia/Kolkata', overlap: 'allow', command: 'two # not a comment: part of the command' });
    expect(entries[1]!.env.A).to.equal('changed');
    expect(entries[1]!.env).to.not.have.property('CRON_TZ');
  });

  it("treats % as cron does: the command ends, the rest is stdin with % → newline, \\% is a literal %", () => {
    expect(splitPercent('mail -s hi joe%Joe,%%Where are your kids?%')).to.deep.equal({ command: 'mail -s hi joe', input: 'Joe,\n\nWhere are your kids?\n' });
    expect(splitPercent('date +\\%s')).to.deep.equal({ command: 'date +%s', input: undefined });
    expect(splitPercent('cat%50\\% off%')).to.deep.equal({ command: 'cat', input: '50% off\n' });
  });

  it('an entry that only moved keeps its key; a changed one gets a new one', () => {
    const a = parse('* * * * * * x\n*/2 * * * * * y').entries;
    const b = parse('\n\n* * * * * * x\n*/2 * * * * * y2').entries;
    expect(b[0]!.key).to.equal(a[0]!.key);
    expect(b[0]!.name).to.equal('line-3');
    expect(b[1]!.key).to.not.equal(a[1]!.key);
  });

  it('collects every problem with its line number; duplicate names are one', () => {
    try {
      parse('# name: x\n* * * * * a\n# name: x\n* * * * * b\n61 * * * * c');
      expect.fail('parsed');
    } catch (error) {
      expect(error).to.be.instanceOf(CrontabSyntaxError);
      expect((error as CrontabSyntaxError).problems.map((p) => p.line)).to.deep.equal([4, 5]);
      expect((error as Error).message).to.match(/^ct:4: the name 'x' is already used by line 2$/m);
    }
  });

  it('Prometheus text: label values escaped, one HELP and TYPE per family', () => {
    expect(escapeLabelValue('a\\b"c\nd')).to.equal('a\\\\b\\"c\\nd');
    const text = formatExposition([{ name: 'x_total', help: 'X.', type: 'counter', samples: [{ labels: { job: 'q"' }, value: 3 }] }]);
    expect(text).to.equal('# HELP x_total X.\n# TYPE x_total counter\nx_total{job="q\\""} 3\n');
  });

  it("--test on Debian's example crontab: exit 0, each entry with its next three instants in its zone", async () => {
    const file = join(dir, 'debian');
    writeFileSync(file, DEBIAN_EXAMPLE);
    const result = await runCli(['crontab', file, '--test', '--json', '--tz', 'Europe/Berlin']);
    expect(result.code, result.stderr).to.equal(0);
    const entries = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { job: string; line: number; command: string; input?: string; next: string[]; tz: string });
    expect(entries.map((e) => e.line)).to.deep.equal([8, 10, 12, 13, 14, 16]);
    const [daily, monthly, joe, every2h, sunday, wax] = entries as [typeof entries[0], typeof entries[0], typeof entries[0], typeof entries[0], typeof entries[0], typeof entries[0]];
    for (const e of entries) {
      expect(e.next).to.have.length(3);
      expect(e.tz).to.equal('Europe/Berlin');
      for (const instant of e.next) expect(instant).to.match(/:00\+0[12]:00$/); // second 0, Berlin offset
    }
    expect(daily.next[0]).to.match(/T00:05:00\+01:00$/);
    expect(monthly.next.every((n) => /-01T14:15:00/.test(n))).to.equal(true);
    expect(joe.command).to.equal('mail -s "It\'s 10pm" joe');
    expect(joe.input).to.equal('Joe,\n\nWhere are your kids?\n');
    expect(every2h.next.map((n) => n.slice(11, 16))).to.satisfy((times: string[]) => times.every((t) => /^(0[02468]|1[02468]|2[02]):23$/.test(t)));
    expect(new Set(sunday.next.map((n) => new Date(n).toLocaleDateString('en-US', { weekday: 'short', timeZone: 'Europe/Berlin' })))).to.deep.equal(new Set(['Sun']));
    expect(wax.command).to.equal('expr $(date +%s) / 60 / 60 / 24 % 9 > /dev/null || echo Wax the floor.');
    expect(wax.input).to.equal(undefined);
    // The same file read as text, by a person.
    const human = await runCli(['crontab', file, '--test']);
    expect(human.code).to.equal(0);
    expect(human.stdout).to.match(/debian:12 \[line-12\] 0 22 \* \* 1-5 {2}mail -s "It's 10pm" joe {2}\(stdin: "Joe,\\n\\nWhere are your kids\?\\n"\)/);
  });

  it('each of 20 malformed lines alone is refused with its line number', () => {
    MALFORMED.forEach((bad, i) => {
      const text = ['* * * * * * true', ...Array.from({ length: i + 1 }, () => '#'), bad].join('\n');
      try {
        parse(text);
        expect.fail(`parsed: ${bad}`);
      } catch (error) {
        expect(error, bad).to.be.instanceOf(CrontabSyntaxError);
        expect((error as CrontabSyntaxError).problems.map((p) => p.line), bad).to.deep.equal([i + 3]);
      }
    });
  });

  it('lockstep crontab on a file of the 20 malformed lines: exit 2, FILE:LINE: reason for each, nothing run', async () => {
    const marker = join(dir, 'ran');
    const file = join(dir, 'bad');
    // A good entry first: it would touch the marker if anything ran. Bad lines on 3, 5, 7...
    writeFileSync(file, [`* * * * * * touch ${marker}`, ...MALFORMED.flatMap((bad) => ['#', bad]), ''].join('\n'));
    for (const args of [['crontab', file], ['crontab', file, '--test']]) {
      const r = await runCli(args);
      expect(r.code, r.stderr).to.equal(2);
      const reported = r.stderr.split('\n').filter((l) => l.startsWith(`${file}:`));
      expect(reported.map((l) => Number(l.slice(file.length + 1).split(':')[0]))).to.deep.equal(MALFORMED.map((_b, i) => 3 + 2 * i));
      for (const l of reported) expect(l).to.match(/^\S+:\d+: \S.{8,}/); // a reason, not just a position
    }
    expect(() => rmSync(marker)).to.throw(); // nothing ran
  });
});
