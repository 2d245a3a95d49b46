#!/usr/bin/python3
"""Generate the commented default ccmail-bridge.conf, or the SETTINGS section of
ccmail-bridge.conf(5), from config/src/settings.cpp (the one source of truth).

usage: gen-settings.py conf|man SETTINGS_CPP > output

WHY a script rather than a hand-written file: engineers add rows to the table while
the product evolves; generating at package build time keeps the shipped config and
man page true. A row that cannot be parsed stops the build (better than a silent gap).
"""
import re
import sys
import textwrap

STRING = r'"(?:[^"\\]|\\.)*"'
# One row of a component's table: { "name", "default", "meaning" "continued" ... }
ROW = re.compile(r'\{\s*(' + STRING + r')\s*,\s*(' + STRING + r')\s*,\s*((?:' + STRING + r'\s*)+)\}', re.S)
# A component's table, "constexpr Row kMilter[] = { rows };", and where the tables are joined,
# AppendComponent("milter", kMilter, &all), in the order the program lists them.
TABLE = re.compile(r'constexpr\s+Row\s+(\w+)\[\]\s*=\s*\{(.*?)\n\};', re.S)
APPEND = re.compile(r'AppendComponent\(\s*(' + STRING + r')\s*,\s*(\w+)\s*,')


def unquote(lits):
    parts = re.findall(STRING, lits)
    return ''.join(bytes(p[1:-1], 'utf-8').decode('unicode_escape') for p in parts)


def parse(path):
    text = open(path, encoding='utf-8').read()
    text = re.sub(r'//[^\n]*', '', text)  # comments may hold quotes
    tables = {m.group(1): m.group(2) for m in TABLE.finditer(text)}
    rows = []
    for m in APPEND.finditer(text):
        component, table = unquote(m.group(1)), m.group(2)
        if table not in tables:
            sys.exit(f'gen-settings: table {table} of component {component} not found in {path}')
        for r in ROW.finditer(tables[table]):
            name, default, meaning = (unquote(g) for g in r.groups())
            rows.append((name, default, component, meaning))
    if len(rows) < 10:
        sys.exit(f'gen-settings: only {len(rows)} settings parsed from {path}; table format changed?')
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        sys.exit('gen-settings: duplicate setting names in ' + path)
    return rows


TITLES = {'general': 'General (every process)', 'milter': 'ccmail-milter',
          'exporter': 'ccmail-exporter', 'format': 'cc:Mail import file format',
          'submitter': 'ccmail-submitter (the way back: cc:Mail EXPORT files to Internet mail)'}


def groups(rows):
    order = []
    for r in rows:
        if r[2] not in order:
            order.append(r[2])
    for g in order:
        yield g, [r for r in rows if r[2] == g]


def conf(rows):
    out = ['# /etc/ccmail-bridge/ccmail-bridge.conf - configuration of ccmail-bridge',
           '#',
           '# Syntax as Postfix main.cf: "name = value", "#" starts a comment line,',
           '# a line starting with white space continues the previous one.',
           '# Every setting is listed below, commented out, with its built-in default.',
           '# Uncomment and change what your site needs, then run',
           '#   ccmail-milter --check && systemctl reload ccmail-milter ccmail-exporter',
           '# See ccmail-bridge.conf(5) and /usr/share/doc/ccmail-bridge/MTA-SETUP.md.',
           '']
    for g, rs in groups(rows):
        out.append('# ' + '=' * 70)
        out.append('# ' + TITLES.get(g, g))
        out.append('# ' + '=' * 70)
        out.append('')
        for name, default, _, meaning in rs:
            for line in textwrap.wrap(meaning, 76):
                out.append('# ' + line)
            out.append(f'#{name} = {default}'.rstrip())
            out.append('')
    return '\n'.join(out)


def roff(s):
    s = s.replace('\\', '\\e').replace('-', '\\-')
    return s


def man(rows):
    out = []
    for g, rs in groups(rows):
        out.append('.SS ' + roff(TITLES.get(g, g)))
        for name, default, _, meaning in rs:
            out.append('.TP')
            shown = default if default else '(empty)'
            out.append(f'.B {roff(name)}\n(default: \\fB{roff(shown)}\\fR)')
            line = roff(meaning)
            if line.startswith('.') or line.startswith("'"):
                line = '\\&' + line
            out.append(line)
    return '\n'.join(out)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ('conf', 'man'):
        sys.exit('usage: gen-settings.py conf|man SETTINGS_CPP')
    rows = parse(sys.argv[2])
    print(conf(rows) if sys.argv[1] == 'conf' else man(rows))


if __name__ == '__main__':
    main()
