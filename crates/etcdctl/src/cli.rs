//! A command tree and flag parser with the semantics etcdctl gets from cobra and pflag:
//! flags anywhere among the arguments, `--name=value` / `--name value` / `-x value` / `-xvalue`,
//! bool flags without a value, `--` ending the flags, persistent flags inherited by
//! subcommands, unique-prefix matching of command names, and cobra's error texts.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::gofmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    Int,
    Dur,
    Slice,
}

#[derive(Clone, Debug)]
pub struct FlagDef {
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    pub default: &'static str,
    pub usage: &'static str,
}

pub const fn flag(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    usage: &'static str,
) -> FlagDef {
    FlagDef {
        name,
        short: None,
        kind,
        default,
        usage,
    }
}

pub const fn flag_short(
    name: &'static str,
    short: char,
    kind: Kind,
    default: &'static str,
    usage: &'static str,
) -> FlagDef {
    FlagDef {
        name,
        short: Some(short),
        kind,
        default,
        usage,
    }
}

/// One command of the tree. `runnable` is false for groups such as `member`, which print
/// their usage when run.
#[derive(Debug)]
pub struct Cmd {
    pub name: &'static str,
    pub use_line: &'static str,
    pub short: &'static str,
    pub long: &'static str,
    pub flags: Vec<FlagDef>,
    pub persistent: Vec<FlagDef>,
    pub subs: Vec<Cmd>,
    pub runnable: bool,
    /// cobra's `DisableFlagsInUseLine`.
    pub no_flags_in_use_line: bool,
}

impl Cmd {
    pub fn new(use_line: &'static str, short: &'static str) -> Cmd {
        let name = use_line.split(' ').next().unwrap_or(use_line);
        Cmd {
            name,
            use_line,
            short,
            long: "",
            flags: Vec::new(),
            persistent: Vec::new(),
            subs: Vec::new(),
            runnable: true,
            no_flags_in_use_line: false,
        }
    }
    pub fn group(use_line: &'static str, short: &'static str, subs: Vec<Cmd>) -> Cmd {
        let mut c = Cmd::new(use_line, short);
        c.subs = subs;
        c.runnable = false;
        c
    }
    pub fn long(mut self, long: &'static str) -> Cmd {
        self.long = long;
        self
    }
    pub fn flags(mut self, flags: Vec<FlagDef>) -> Cmd {
        self.flags = flags;
        self
    }
    pub fn persistent(mut self, flags: Vec<FlagDef>) -> Cmd {
        self.persistent = flags;
        self
    }
}

/// Why parsing stopped without a command to run.
#[derive(Debug)]
pub enum CliError {
    /// `unknown command "x" for "etcdctl"`: printed with a hint, exit 1.
    UnknownCommand(String),
    /// A flag error: printed with the command's usage, exit 1.
    Flag(String),
}

/// The flag values of one invocation, typed on access. Values were checked while parsing.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    values: BTreeMap<&'static str, String>,
    slices: BTreeMap<&'static str, Vec<String>>,
    kinds: BTreeMap<&'static str, Kind>,
    changed: HashSet<&'static str>,
    /// Names of the flags inherited from parents (the global ones), for env lookup.
    pub inherited: Vec<&'static str>,
}

impl Flags {
    pub fn str(&self, name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_default()
    }
    pub fn bool(&self, name: &str) -> bool {
        self.values
            .get(name)
            .and_then(|v| gofmt::parse_bool(v))
            .unwrap_or(false)
    }
    pub fn int(&self, name: &str) -> i64 {
        self.values
            .get(name)
            .and_then(|v| gofmt::parse_int(v).ok())
            .unwrap_or(0)
    }
    pub fn dur(&self, name: &str) -> Duration {
        self.values
            .get(name)
            .and_then(|v| gofmt::parse_duration(v).ok())
            .unwrap_or_default()
    }
    pub fn slice(&self, name: &str) -> Vec<String> {
        self.slices.get(name).cloned().unwrap_or_default()
    }
    pub fn changed(&self, name: &str) -> bool {
        self.changed.contains(name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.kinds.get(name).copied()
    }
    /// The value as pflag's `Value.String()` shows it (for `--debug`'s listing).
    pub fn display(&self, name: &str) -> String {
        match self.kinds.get(name) {
            Some(Kind::Slice) => format!("[{}]", self.slice(name).join(",")),
            Some(Kind::Dur) => gofmt::format_duration(self.dur(name)),
            Some(Kind::Int) => self.int(name).to_string(),
            Some(Kind::Bool) => self.bool(name).to_string(),
            Some(_) => self.str(name),
            None => String::new(),
        }
    }

    fn define(&mut self, def: &FlagDef) {
        let name = def.name;
        self.kinds.insert(name, def.kind);
        if def.kind == Kind::Slice {
            self.slices.insert(name, split_csv(def.default));
        }
        self.values.insert(name, def.default.to_string());
    }

    /// Sets a flag as pflag's `Set` does: checks the value for its kind; a slice flag's first
    /// set replaces the default and later ones append.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let Some((&key, &kind)) = self.kinds.get_key_value(name) else {
            return Err(format!("no such flag -{name}"));
        };
        match kind {
            Kind::Bool => {
                gofmt::parse_bool(value).ok_or_else(|| {
                    format!(
                        "strconv.ParseBool: parsing {}: invalid syntax",
                        gofmt::quote(value)
                    )
                })?;
            }
            Kind::Int => {
                gofmt::parse_int(value)?;
            }
            Kind::Dur => {
                gofmt::parse_duration(value)?;
            }
            Kind::Str => {}
            Kind::Slice => {
                let items = split_csv(value);
                if self.changed.contains(key) {
                    self.slices.entry(key).or_default().extend(items);
                } else {
                    self.slices.insert(key, items);
                }
            }
        }
        self.values.insert(key, value.to_string());
        self.changed.insert(key);
        Ok(())
    }
}

/// pflag reads a string slice as one CSV record.
fn split_csv(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' if cur.is_empty() || in_quotes => in_quotes = !in_quotes,
            ',' if !in_quotes => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

pub struct Invocation<'a> {
    /// The commands from the root to the one found.
    pub path: Vec<&'a Cmd>,
    pub flags: Flags,
    pub args: Vec<String>,
    pub help: bool,
}

impl<'a> Invocation<'a> {
    pub fn cmd(&self) -> &'a Cmd {
        self.path[self.path.len() - 1]
    }
    /// "member add", as cobra's command path without the root.
    pub fn names(&self) -> Vec<&'static str> {
        self.path.iter().skip(1).map(|c| c.name).collect()
    }
}

fn all_flags<'a>(path: &[&'a Cmd]) -> (Vec<&'a FlagDef>, Vec<&'a FlagDef>) {
    // (local, inherited) as cobra: local = own flags + own persistent; inherited = parents'
    // persistent flags.
    let Some((last, parents)) = path.split_last() else {
        return (Vec::new(), Vec::new());
    };
    let mut local: Vec<&FlagDef> = last.flags.iter().chain(last.persistent.iter()).collect();
    local.push(&HELP_FLAG);
    let mut inherited: Vec<&FlagDef> = Vec::new();
    for p in parents.iter().rev() {
        for f in &p.persistent {
            if !local.iter().any(|l| l.name == f.name)
                && !inherited.iter().any(|l| l.name == f.name)
            {
                inherited.push(f);
            }
        }
    }
    local.sort_by_key(|f| f.name);
    inherited.sort_by_key(|f| f.name);
    (local, inherited)
}

static HELP_FLAG: FlagDef = FlagDef {
    name: "help",
    short: Some('h'),
    kind: Kind::Bool,
    default: "false",
    usage: "",
};

fn find_flag<'a>(defs: &[&'a FlagDef], name: &str) -> Option<&'a FlagDef> {
    defs.iter().copied().find(|f| f.name == name)
}

fn find_short<'a>(defs: &[&'a FlagDef], c: char) -> Option<&'a FlagDef> {
    defs.iter().copied().find(|f| f.short == Some(c))
}

/// cobra's `stripFlags`: the non-flag words, skipping the value after a flag that takes one.
fn strip_flags(args: &[String], defs: &[&FlagDef]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        i += 1;
        if s == "--" {
            break;
        }
        let takes_value_long = s.starts_with("--")
            && !s.contains('=')
            && !find_flag(defs, &s[2..]).is_some_and(|f| f.kind == Kind::Bool);
        let takes_value_short = !s.starts_with("--")
            && s.starts_with('-')
            && !s.contains('=')
            && s.chars().count() == 2
            && !s[1..]
                .chars()
                .next()
                .and_then(|c| find_short(defs, c))
                .is_some_and(|f| f.kind == Kind::Bool);
        if takes_value_long || takes_value_short {
            if args.len() - i <= 1 {
                break;
            }
            i += 1;
            continue;
        }
        if !s.is_empty() && !s.starts_with('-') {
            out.push(s.clone());
        }
    }
    out
}

fn find_sub<'a>(cmd: &'a Cmd, name: &str) -> Option<&'a Cmd> {
    if let Some(c) = cmd.subs.iter().find(|c| c.name == name) {
        return Some(c);
    }
    let matches: Vec<&Cmd> = cmd
        .subs
        .iter()
        .filter(|c| c.name.starts_with(name))
        .collect();
    if matches.len() == 1 {
        Some(matches[0])
    } else {
        None
    }
}

/// Levenshtein distance, ignoring case (cobra's `ld`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// cobra's "Did you mean this?": commands within edit distance 2 or starting with the word.
fn suggestions_for(cmd: &Cmd, typed: &str) -> Vec<String> {
    let mut names: Vec<&str> = cmd.subs.iter().map(|c| c.name).collect();
    names.push("help");
    names.sort_unstable();
    names
        .into_iter()
        .filter(|n| distance(typed, n) <= 2 || n.to_lowercase().starts_with(&typed.to_lowercase()))
        .map(String::from)
        .collect()
}

/// Finds the command named by `args` and parses its flags.
pub fn parse<'a>(
    root: &'a Cmd,
    args: &[String],
) -> Result<Invocation<'a>, (Vec<&'a Cmd>, CliError)> {
    let mut path = vec![root];
    let mut rest: Vec<String> = args.to_vec();
    loop {
        let cur = path[path.len() - 1];
        let (local, inherited) = all_flags(&path);
        let defs: Vec<&FlagDef> = local.iter().chain(inherited.iter()).copied().collect();
        let words = strip_flags(&rest, &defs);
        let Some(next) = words.first() else { break };
        match find_sub(cur, next) {
            Some(sub) => {
                if let Some(pos) = rest.iter().position(|a| a == next) {
                    rest.remove(pos);
                }
                path.push(sub);
            }
            None => {
                if path.len() == 1 && !cur.subs.is_empty() {
                    // cobra's help command takes part in prefix matching ("hel").
                    let help_prefix = "help".starts_with(next.as_str())
                        && !next.is_empty()
                        && !cur.subs.iter().any(|c| c.name.starts_with(next.as_str()));
                    if next == "help" || help_prefix {
                        // cobra's help command: `etcdctl help member add`.
                        let mut hp = vec![root];
                        for w in words.iter().skip(1) {
                            match find_sub(hp[hp.len() - 1], w) {
                                Some(s) => hp.push(s),
                                None => break,
                            }
                        }
                        let mut flags = Flags::default();
                        let (l, i) = all_flags(&hp);
                        for d in l.iter().chain(i.iter()) {
                            flags.define(d);
                        }
                        return Ok(Invocation {
                            path: hp,
                            flags,
                            args: Vec::new(),
                            help: true,
                        });
                    }
                    let mut msg = format!("unknown command {} for \"etcdctl\"", gofmt::quote(next));
                    let suggestions = suggestions_for(cur, next);
                    if !suggestions.is_empty() {
                        msg.push_str(&format!(
                            "\n\nDid you mean this?\n\t{}\n",
                            suggestions.join("\n\t")
                        ));
                    }
                    return Err((path, CliError::UnknownCommand(msg)));
                }
                break;
            }
        }
    }
    let (local, inherited) = all_flags(&path);
    let defs: Vec<&FlagDef> = local.iter().chain(inherited.iter()).copied().collect();
    let mut flags = Flags::default();
    for d in &defs {
        flags.define(d);
    }
    flags.inherited = inherited.iter().map(|f| f.name).collect();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        i += 1;
        if a == "--" {
            positional.extend(rest[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
                return Err((path, CliError::Flag(format!("bad flag syntax: {a}"))));
            }
            let Some(def) = find_flag(&defs, name) else {
                return Err((path, CliError::Flag(format!("unknown flag: --{name}"))));
            };
            let value = match (value, def.kind) {
                (Some(v), _) => v,
                (None, Kind::Bool) => "true".to_string(),
                (None, _) if i < rest.len() => {
                    i += 1;
                    rest[i - 1].clone()
                }
                (None, _) => {
                    return Err((
                        path,
                        CliError::Flag(format!("flag needs an argument: --{name}")),
                    ));
                }
            };
            if let Err(e) = flags.set(def.name, &value) {
                return Err((
                    path,
                    CliError::Flag(format!(
                        "invalid argument {} for \"--{}\" flag: {e}",
                        gofmt::quote(&value),
                        def.name
                    )),
                ));
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let shorts: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < shorts.len() {
                let c = shorts[j];
                let Some(def) = find_short(&defs, c) else {
                    return Err((
                        path,
                        CliError::Flag(format!("unknown shorthand flag: '{c}' in {a}")),
                    ));
                };
                let rest_str: String = shorts[j + 1..].iter().collect();
                let value;
                if let Some(v) = rest_str.strip_prefix('=') {
                    value = v.to_string();
                    j = shorts.len();
                } else if def.kind == Kind::Bool {
                    value = "true".to_string();
                    j += 1;
                } else if !rest_str.is_empty() {
                    value = rest_str;
                    j = shorts.len();
                } else if i < rest.len() {
                    value = rest[i].clone();
                    i += 1;
                    j = shorts.len();
                } else {
                    return Err((
                        path,
                        CliError::Flag(format!("flag needs an argument: '{c}' in -{c}")),
                    ));
                }
                if let Err(e) = flags.set(def.name, &value) {
                    return Err((
                        path,
                        CliError::Flag(format!(
                            "invalid argument {} for \"-{c}, --{}\" flag: {e}",
                            gofmt::quote(&value),
                            def.name
                        )),
                    ));
                }
            }
        } else {
            positional.push(a.clone());
        }
    }
    let help = flags.bool("help");
    Ok(Invocation {
        path,
        flags,
        args: positional,
        help,
    })
}

/// etcdctl's usage text (ctlv3/help.go), formatted through Go's tabwriter.
pub fn usage(path: &[&Cmd]) -> String {
    let cmd = path[path.len() - 1];
    let mut out = String::new();
    let names: Vec<&str> = path.iter().skip(1).map(|c| c.name).collect();
    out.push_str("NAME:\n");
    if path.len() == 1 {
        out.push_str(&format!("\t{} - {}\n", cmd.name, cmd.short));
    } else {
        out.push_str(&format!("\t{} - {}\n", names.join(" "), cmd.short));
    }
    out.push_str("\nUSAGE:\n");
    let mut use_line = String::from("etcdctl");
    for n in names.iter().take(names.len().saturating_sub(1)) {
        use_line.push(' ');
        use_line.push_str(n);
    }
    if path.len() > 1 {
        use_line.push(' ');
        use_line.push_str(cmd.use_line);
    } else {
        use_line = cmd.use_line.to_string();
    }
    let (local, inherited) = all_flags(path);
    if (!local.is_empty() || !inherited.is_empty()) && !cmd.no_flags_in_use_line {
        use_line.push_str(" [flags]");
    }
    out.push_str(&format!("\t{use_line}\n"));
    if path.len() == 1 {
        out.push_str(&format!("\nVERSION:\n\t{}\n", crate::VERSION));
    }
    if !cmd.subs.is_empty() {
        out.push_str(&format!("\nAPI VERSION:\n\t{}\n", crate::API_VERSION));
        out.push_str("\n\nCOMMANDS:\n");
        fn walk(c: &Cmd, prefix: &str, out: &mut String) {
            let mut subs: Vec<&Cmd> = c.subs.iter().collect();
            subs.sort_by_key(|s| s.name);
            for s in subs {
                let name = if prefix.is_empty() {
                    s.name.to_string()
                } else {
                    format!("{prefix} {}", s.name)
                };
                if s.runnable {
                    out.push_str(&format!("\t{name}\t{}\n", s.short));
                }
                walk(s, &name, out);
            }
        }
        let mut subs = String::new();
        walk(cmd, "", &mut subs);
        if path.len() == 1 {
            subs = format!("\thelp\tHelp about any command\n{subs}");
            // cobra sorts the help command among the others.
            let mut lines: Vec<&str> = subs.lines().collect();
            lines.sort_by_key(|l| {
                l.trim_start_matches('\t')
                    .split('\t')
                    .next()
                    .unwrap_or("")
                    .to_string()
            });
            subs = lines.join("\n") + "\n";
        }
        out.push_str(&subs);
    }
    if !cmd.long.is_empty() {
        out.push_str("\nDESCRIPTION:\n");
        for line in cmd
            .long
            .trim_matches(|c| c == '\n' || c == '\t' || c == ' ')
            .split('\n')
        {
            out.push_str(&format!("\t{line}\n"));
        }
    }
    let help_usage = format!("help for {}", cmd.name);
    let render = |defs: &[&FlagDef]| -> String {
        let mut s = String::new();
        for f in defs {
            let mut line = match f.short {
                Some(c) => format!("  -{c}, --{}", f.name),
                None => format!("      --{}", f.name),
            };
            let default = match f.kind {
                Kind::Str => gofmt::quote(f.default),
                Kind::Slice => format!("[{}]", f.default),
                Kind::Dur => {
                    gofmt::format_duration(gofmt::parse_duration(f.default).unwrap_or_default())
                }
                _ => f.default.to_string(),
            };
            if f.kind == Kind::Bool {
                line.push_str(&format!("[={default}]"));
            } else {
                line.push_str(&format!("={default}"));
            }
            let usage = if f.name == "help" {
                help_usage.as_str()
            } else {
                f.usage
            };
            s.push_str(&format!("{line}\t{usage}\n"));
        }
        s
    };
    if !local.is_empty() {
        out.push_str("\nOPTIONS:\n");
        out.push_str(&render(&local));
    }
    if !inherited.is_empty() {
        out.push_str("\nGLOBAL OPTIONS:\n");
        out.push_str(&render(&inherited));
    }
    out.push('\n');
    crate::tabwriter::format(&out, 0, 8, 1, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Cmd {
        let mut root = Cmd::group(
            "etcdctl",
            "A simple command line client for etcd3.",
            vec![
                Cmd::new("get [options] <key> [range_end]", "Gets").flags(vec![
                    flag("prefix", Kind::Bool, "false", ""),
                    flag("limit", Kind::Int, "0", ""),
                ]),
                Cmd::group(
                    "member <subcommand>",
                    "m",
                    vec![Cmd::new("list", "l"), Cmd::new("add", "a")],
                ),
            ],
        );
        root.persistent = vec![
            flag("endpoints", Kind::Slice, "127.0.0.1:2379", ""),
            flag_short("write-out", 'w', Kind::Str, "simple", ""),
            flag("hex", Kind::Bool, "false", ""),
        ];
        root
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn finds_commands_and_flags_anywhere() {
        let root = tree();
        let inv = parse(
            &root,
            &s(&[
                "--endpoints",
                "a:1,b:2",
                "get",
                "foo",
                "--prefix",
                "-w",
                "json",
            ]),
        )
        .unwrap();
        assert_eq!(inv.names(), vec!["get"]);
        assert_eq!(inv.args, s(&["foo"]));
        assert!(inv.flags.bool("prefix"));
        assert_eq!(inv.flags.str("write-out"), "json");
        assert_eq!(inv.flags.slice("endpoints"), s(&["a:1", "b:2"]));
        let inv = parse(&root, &s(&["memb", "li"])).unwrap();
        assert_eq!(inv.names(), vec!["member", "list"]);
        let inv = parse(&root, &s(&["get", "--", "-x", "--prefix"])).unwrap();
        assert_eq!(inv.args, s(&["-x", "--prefix"]));
        assert!(!inv.flags.bool("prefix"));
        let inv = parse(&root, &s(&["get", "-wjson", "k"])).unwrap();
        assert_eq!(inv.flags.str("write-out"), "json");
    }

    #[test]
    fn reports_cobra_errors() {
        let root = tree();
        match parse(&root, &s(&["foo"])) {
            Err((_, CliError::UnknownCommand(m))) => {
                assert_eq!(m, "unknown command \"foo\" for \"etcdctl\"")
            }
            _ => panic!(),
        }
        match parse(&root, &s(&["get", "--bogus"])) {
            Err((_, CliError::Flag(m))) => assert_eq!(m, "unknown flag: --bogus"),
            _ => panic!(),
        }
        match parse(&root, &s(&["get", "--limit=abc"])) {
            Err((_, CliError::Flag(m))) => assert_eq!(
                m,
                "invalid argument \"abc\" for \"--limit\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax"
            ),
            _ => panic!(),
        }
        match parse(&root, &s(&["get", "-z"])) {
            Err((_, CliError::Flag(m))) => assert_eq!(m, "unknown shorthand flag: 'z' in -z"),
            _ => panic!(),
        }
    }

    #[test]
    fn csv_slices() {
        assert_eq!(split_csv("a,b"), s(&["a", "b"]));
        assert_eq!(split_csv("\"a,b\",c"), s(&["a,b", "c"]));
        assert!(split_csv("").is_empty());
    }
}
