//! The command line as urfave/cli v1 (which etcd 3.4's v2 etcdctl is built on) reads it, and
//! the help it prints.
//!
//! What users see of it, and what this reproduces:
//! - global flags come before the command and are parsed by Go's `flag` package: parsing
//!   stops at the first argument that is not a flag; `-x` and `--x` are the same; a
//!   non-boolean flag takes the next argument whatever it looks like;
//! - a command's own flags may come anywhere among its arguments (urfave's `reorderArgs`
//!   moves the ones it knows to the front, each with the argument after it), a `--` ends
//!   them;
//! - aliases (`--output`/`-o`) are copied onto each other, and giving both is an error;
//! - help: `--help`/`-h` at each level, the `help`/`h` command, and the three templates
//!   (application, command group, command), aligned by Go's `text/tabwriter`;
//! - errors: `Incorrect Usage...` and the help on stdout, the error on stderr, exit 1; an
//!   unknown command is `No help topic for 'x'`, exit 3.

use std::collections::HashMap;
use std::time::Duration;

use crate::gofmt;
use crate::rawarg;
use crate::tabwriter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    Int,
    Dur,
    /// urfave's `StringSliceFlag`: each use adds one value.
    Slice,
}

/// One urfave flag: `name` lists its names as urfave does (`"output, o"`).
#[derive(Clone, Debug)]
pub struct FlagDef {
    pub name: &'static str,
    pub kind: Kind,
    /// The default, as Go would print it (`2s`, `0`, `simple`).
    pub value: &'static str,
    pub usage: &'static str,
    /// Not listed in the help (flags of ours that etcd 3.4's v2 etcdctl does not have).
    pub hidden: bool,
}

pub const fn flag(
    name: &'static str,
    kind: Kind,
    value: &'static str,
    usage: &'static str,
) -> FlagDef {
    FlagDef {
        name,
        kind,
        value,
        usage,
        hidden: false,
    }
}

impl FlagDef {
    pub const fn hide(mut self) -> FlagDef {
        self.hidden = true;
        self
    }

    fn names(&self) -> impl Iterator<Item = &'static str> {
        self.name.split(',').map(|n| n.trim_matches(' '))
    }
}

const HELP_FLAG: FlagDef = flag("help, h", Kind::Bool, "", "show help");
const VERSION_FLAG: FlagDef = flag("version, v", Kind::Bool, "", "print the version");

/// One urfave command; a command with `subs` is a group (urfave starts a sub-application).
#[derive(Clone, Debug, Default)]
pub struct CmdDef {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub usage: &'static str,
    pub args_usage: &'static str,
    pub description: &'static str,
    pub flags: Vec<FlagDef>,
    pub subs: Vec<CmdDef>,
}

impl CmdDef {
    pub fn new(name: &'static str, usage: &'static str, args_usage: &'static str) -> CmdDef {
        CmdDef {
            name,
            usage,
            args_usage,
            ..CmdDef::default()
        }
    }
    pub fn flags(mut self, flags: Vec<FlagDef>) -> CmdDef {
        self.flags = flags;
        self
    }
    pub fn description(mut self, d: &'static str) -> CmdDef {
        self.description = d;
        self
    }
    pub fn subs(mut self, subs: Vec<CmdDef>) -> CmdDef {
        self.subs = subs;
        self
    }
    fn names(&self) -> Vec<&'static str> {
        let mut n = vec![self.name];
        n.extend_from_slice(self.aliases);
        n
    }
    fn has_name(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

fn help_command() -> CmdDef {
    CmdDef {
        name: "help",
        aliases: &["h"],
        usage: "Shows a list of commands or help for one command",
        args_usage: "[command]",
        ..CmdDef::default()
    }
}

/// The application: etcdctl itself.
pub struct AppDef {
    pub name: &'static str,
    pub usage: &'static str,
    pub version: &'static str,
    pub flags: Vec<FlagDef>,
    pub commands: Vec<CmdDef>,
    /// Prints `--version`'s text.
    pub version_text: fn(&str) -> String,
}

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Bool(bool),
    Str(String),
    Int(i64),
    Dur(Duration),
    Slice(Vec<String>),
}

/// Go's `flag.FlagSet` over urfave flags: one entry per name.
#[derive(Clone, Debug, Default)]
pub struct FlagSet {
    kinds: HashMap<&'static str, Kind>,
    values: HashMap<&'static str, Val>,
    visited: Vec<&'static str>,
    args: Vec<String>,
}

/// Go's `underscoreOK`: underscores only between digits (a base prefix counts as one).
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'-' | b'+') = b.first() {
        b = &b[1..];
    }
    let (mut i, mut saw, mut hex) = (0, b'^', false);
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&c.to_ascii_lowercase())) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else if saw == b'_' {
            return false;
        } else {
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Go's `strconv.ParseInt(s, 0, 64)`, the way `flag`'s int flags read their value.
pub fn parse_go_int(s: &str) -> Result<i64, &'static str> {
    if s.contains('_') && !underscore_ok(s) {
        return Err("parse error");
    }
    let s: String = s.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, &s[..]),
    };
    if body.is_empty() {
        return Err("parse error");
    }
    let (base, digits) =
        if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, r)
        } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, r)
        } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, r)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err("parse error");
    }
    let v = u128::from_str_radix(digits, base).map_err(|_| "value out of range")?;
    let v = if neg { -(v as i128) } else { v as i128 };
    i64::try_from(v).map_err(|_| "value out of range")
}

fn parse_val(kind: Kind, s: &str) -> Result<Val, &'static str> {
    match kind {
        Kind::Bool => gofmt::parse_bool(s).map(Val::Bool).ok_or("parse error"),
        Kind::Str => Ok(Val::Str(s.to_string())),
        Kind::Int => parse_go_int(s).map(Val::Int),
        Kind::Dur => {
            // Negative durations act as zero for every timeout here.
            gofmt::parse_duration(s)
                .map(Val::Dur)
                .map_err(|_| "parse error")
        }
        Kind::Slice => Ok(Val::Slice(vec![s.to_string()])),
    }
}

fn q(s: &str) -> String {
    gofmt::quote_bytes(&rawarg::bytes(s))
}

impl FlagSet {
    fn new(flags: &[FlagDef]) -> FlagSet {
        let mut set = FlagSet::default();
        for f in flags {
            for name in f.names() {
                set.kinds.insert(name, f.kind);
                let default = match f.kind {
                    Kind::Slice => Val::Slice(Vec::new()),
                    Kind::Bool => Val::Bool(false),
                    k => parse_val(k, f.value).unwrap_or(Val::Str(String::new())),
                };
                set.values.insert(name, default);
            }
        }
        set
    }

    fn key(&self, name: &str) -> Option<&'static str> {
        self.kinds.get_key_value(name).map(|(k, _)| *k)
    }

    fn set(&mut self, name: &'static str, kind: Kind, value: &str) -> Result<(), &'static str> {
        let v = parse_val(kind, value)?;
        match (self.values.get_mut(name), v) {
            (Some(Val::Slice(list)), Val::Slice(mut add)) => list.append(&mut add),
            (Some(slot), v) => *slot = v,
            (None, v) => {
                self.values.insert(name, v);
            }
        }
        if !self.visited.contains(&name) {
            self.visited.push(name);
        }
        Ok(())
    }

    /// Go's `FlagSet.Parse`.
    fn parse(&mut self, args: &[String]) -> Result<(), String> {
        let mut i = 0;
        loop {
            let Some(s) = args.get(i) else {
                self.args = Vec::new();
                return Ok(());
            };
            let b = s.as_bytes();
            if b.len() < 2 || b[0] != b'-' {
                self.args = args[i..].to_vec();
                return Ok(());
            }
            let mut minuses = 1;
            if b[1] == b'-' {
                minuses = 2;
                if b.len() == 2 {
                    self.args = args[i + 1..].to_vec();
                    return Ok(());
                }
            }
            let name = &s[minuses..];
            if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
                self.args = args[i..].to_vec();
                return Err(format!("bad flag syntax: {s}"));
            }
            i += 1;
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (name, None),
            };
            let Some(key) = self.key(name) else {
                self.args = args[i..].to_vec();
                return Err(format!("flag provided but not defined: -{name}"));
            };
            let kind = self.kinds[key];
            if kind == Kind::Bool {
                let v = value.unwrap_or("true");
                if self.set(key, kind, v).is_err() {
                    return Err(format!(
                        "invalid boolean value {} for -{name}: parse error",
                        q(v)
                    ));
                }
                continue;
            }
            let v = match value {
                Some(v) => v.to_string(),
                None => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        next.clone()
                    }
                    None => return Err(format!("flag needs an argument: -{name}")),
                },
            };
            if let Err(e) = self.set(key, kind, &v) {
                return Err(format!("invalid value {} for flag -{name}: {e}", q(&v)));
            }
        }
    }

    /// urfave's `normalizeFlags`: a value given under one name is copied to its aliases.
    fn normalize(&mut self, flags: &[FlagDef]) -> Result<(), String> {
        for f in flags {
            let names: Vec<&'static str> = f.names().collect();
            if names.len() == 1 {
                continue;
            }
            let mut first: Option<&'static str> = None;
            for n in &names {
                if self.visited.contains(n) {
                    if let Some(ff) = first {
                        return Err(format!("Cannot use two forms of the same flag: {n} {ff}"));
                    }
                    first = Some(n);
                }
            }
            let Some(ff) = first else { continue };
            if f.kind == Kind::Slice {
                continue;
            }
            let v = self.values[ff].clone();
            for n in names {
                if !self.visited.contains(&n) {
                    self.values.insert(n, v.clone());
                }
            }
        }
        Ok(())
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Val::Bool(true)))
    }
    pub fn str(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(Val::Str(s)) => s.clone(),
            _ => String::new(),
        }
    }
    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(Val::Int(v)) => *v,
            _ => 0,
        }
    }
    pub fn dur(&self, name: &str) -> Duration {
        match self.values.get(name) {
            Some(Val::Dur(d)) => *d,
            _ => Duration::ZERO,
        }
    }
    /// urfave's `StringSlice` lookup, which drops one empty string (the flag's default
    /// value, split) from what was given unless that is all there is.
    pub fn slice(&self, name: &str) -> Vec<String> {
        let mut v = match self.values.get(name) {
            Some(Val::Slice(v)) => v.clone(),
            _ => return Vec::new(),
        };
        if v != [String::new()]
            && let Some(i) = v.iter().position(String::is_empty)
        {
            v.remove(i);
        }
        v
    }
}

/// A command to run: where it sits in the tree, its flags and the root's, its arguments.
#[derive(Debug)]
pub struct Invocation {
    pub path: Vec<&'static str>,
    pub global: FlagSet,
    pub local: FlagSet,
    pub args: Vec<String>,
}

pub enum Parsed {
    Run(Box<Invocation>),
    /// Help, version or an error was printed; exit with this code.
    Exit(i32),
}

struct App<'a> {
    name: String,
    help_name: String,
    usage: &'a str,
    description: &'a str,
    args_usage: &'a str,
    version: &'a str,
    /// Commands with their help names.
    commands: Vec<(CmdDef, String)>,
    /// How many of `commands` the COMMANDS section lists (sub-applications do not list the
    /// `help` command they add).
    listed: usize,
    flags: Vec<FlagDef>,
}

impl App<'_> {
    fn command(&self, name: &str) -> Option<&(CmdDef, String)> {
        self.commands.iter().find(|(c, _)| c.has_name(name))
    }
}

fn out(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(&rawarg::bytes(s));
    let _ = o.flush();
}

fn err_line(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(&rawarg::bytes(s));
    let _ = e.write_all(b"\n");
}

/// urfave's `unquoteUsage`: the first back-quoted word names the flag's value.
fn unquote_usage(usage: &str) -> (String, String) {
    if let Some(i) = usage.find('`')
        && let Some(j) = usage[i + 1..].find('`')
    {
        let name = &usage[i + 1..i + 1 + j];
        let rest = format!("{}{}{}", &usage[..i], name, &usage[i + 2 + j..]);
        return (name.to_string(), rest);
    }
    (String::new(), usage.to_string())
}

fn prefixed_names(full: &str, placeholder: &str) -> String {
    let parts: Vec<&str> = full.split(',').map(|n| n.trim_matches(' ')).collect();
    let mut out = String::new();
    for (i, name) in parts.iter().enumerate() {
        out.push_str(if name.len() == 1 { "-" } else { "--" });
        out.push_str(name);
        if !placeholder.is_empty() {
            out.push(' ');
            out.push_str(placeholder);
        }
        if i + 1 < parts.len() {
            out.push_str(", ");
        }
    }
    out
}

/// urfave's `stringifyFlag`: names, placeholder, a tab, usage and default.
fn flag_text(f: &FlagDef) -> String {
    let (placeholder, usage) = unquote_usage(f.usage);
    let (needs_placeholder, default) = match f.kind {
        Kind::Bool => (false, String::new()),
        Kind::Slice => (true, String::new()),
        Kind::Str if f.value.is_empty() => (true, String::new()),
        Kind::Str => (true, format!(" (default: {})", gofmt::quote(f.value))),
        Kind::Int | Kind::Dur => (true, format!(" (default: {})", f.value)),
    };
    let placeholder = if needs_placeholder && placeholder.is_empty() {
        "value".to_string()
    } else {
        placeholder
    };
    format!(
        "{}\t{}",
        prefixed_names(f.name, &placeholder),
        format!("{usage}{default}").trim()
    )
}

fn visible(flags: &[FlagDef]) -> Vec<&FlagDef> {
    flags.iter().filter(|f| !f.hidden).collect()
}

fn render(text: &str) {
    out(&tabwriter::format(text, 1, 8, 2, false));
}

fn command_list(app: &App) -> String {
    let mut s = String::new();
    for (c, _) in &app.commands[..app.listed] {
        s.push_str(&format!("\n   {}\t{}", c.names().join(", "), c.usage));
    }
    s
}

/// urfave's `AppHelpTemplate`.
fn show_app_help(app: &App) {
    let flags = visible(&app.flags);
    let mut s = format!("NAME:\n   {}", app.name);
    if !app.usage.is_empty() {
        s.push_str(&format!(" - {}", app.usage));
    }
    s.push_str(&format!("\n\nUSAGE:\n   {} ", app.help_name));
    if !flags.is_empty() {
        s.push_str("[global options]");
    }
    if !app.commands.is_empty() {
        s.push_str(" command [command options]");
    }
    s.push(' ');
    s.push_str(if app.args_usage.is_empty() {
        "[arguments...]"
    } else {
        app.args_usage
    });
    if !app.version.is_empty() {
        s.push_str(&format!("\n\nVERSION:\n   {}", app.version));
    }
    if !app.description.is_empty() {
        s.push_str(&format!("\n\nDESCRIPTION:\n   {}", app.description));
    }
    if !app.commands.is_empty() {
        s.push_str("\n\nCOMMANDS:");
        s.push_str(&command_list(app));
    }
    if !flags.is_empty() {
        s.push_str("\n\nGLOBAL OPTIONS:\n   ");
        let lines: Vec<String> = flags.iter().map(|f| flag_text(f)).collect();
        s.push_str(&lines.join("\n   "));
    }
    s.push('\n');
    render(&s);
}

/// urfave's `SubcommandHelpTemplate`, for a command group.
fn show_subcommand_help(app: &App) {
    let flags = visible(&app.flags);
    let what = if app.description.is_empty() {
        app.usage
    } else {
        app.description
    };
    let mut s = format!(
        "NAME:\n   {} - {what}\n\nUSAGE:\n   {} command",
        app.help_name, app.help_name
    );
    if !flags.is_empty() {
        s.push_str(" [command options]");
    }
    s.push(' ');
    s.push_str(if app.args_usage.is_empty() {
        "[arguments...]"
    } else {
        app.args_usage
    });
    s.push_str("\n\nCOMMANDS:");
    s.push_str(&command_list(app));
    if !flags.is_empty() {
        s.push_str("\n\nOPTIONS:\n   ");
        for f in flags {
            s.push_str(&flag_text(f));
            s.push_str("\n   ");
        }
    }
    s.push('\n');
    render(&s);
}

/// urfave's `ShowCommandHelp`: the command's help (`CommandHelpTemplate`), the group's for
/// an empty name, or exit code 3 for a name the application does not have.
fn show_command_help(app: &App, name: &str) -> i32 {
    if name.is_empty() {
        show_subcommand_help(app);
        return 0;
    }
    let Some((c, help_name)) = app.command(name) else {
        err_line(&format!("No help topic for '{name}'"));
        return 3;
    };
    let flags = visible(&c.flags);
    let mut s = format!(
        "NAME:\n   {help_name} - {}\n\nUSAGE:\n   {help_name}",
        c.usage
    );
    if !flags.is_empty() {
        s.push_str(" [command options]");
    }
    s.push(' ');
    s.push_str(if c.args_usage.is_empty() {
        "[arguments...]"
    } else {
        c.args_usage
    });
    if !c.description.is_empty() {
        s.push_str(&format!("\n\nDESCRIPTION:\n   {}", c.description));
    }
    if !flags.is_empty() {
        s.push_str("\n\nOPTIONS:\n   ");
        for f in flags {
            s.push_str(&flag_text(f));
            s.push_str("\n   ");
        }
    }
    s.push('\n');
    render(&s);
    0
}

/// urfave's `reorderArgs`: the command's own flags (with the argument after each) first,
/// then the rest; a `--` and everything after it stay last.
fn reorder_args(flags: &[FlagDef], args: &[String]) -> Vec<String> {
    let is_flag = |arg: &str| -> bool {
        if arg == "-" || arg == "--" || !arg.starts_with('-') {
            return false;
        }
        let mut a = arg.to_string();
        if a.starts_with("--") {
            a = a.replacen('-', "", 2);
        }
        if a.starts_with('-') {
            a = a.replacen('-', "", 1);
        }
        let a = a.split('=').next().unwrap_or("");
        flags.iter().any(|f| f.names().any(|n| n.trim() == a))
    };
    let mut remaining: Vec<String> = Vec::new();
    let mut reordered: Vec<String> = Vec::new();
    let mut next_may_be_value = false;
    for (i, arg) in args.iter().enumerate() {
        if next_may_be_value && !is_flag(arg) {
            next_may_be_value = false;
            reordered.push(arg.clone());
        } else if arg == "--" {
            let mut r = vec!["--".to_string()];
            r.append(&mut remaining);
            r.extend_from_slice(&args[i + 1..]);
            remaining = r;
            break;
        } else if is_flag(arg) {
            reordered.push(arg.clone());
            next_may_be_value = !arg.contains('=');
        } else {
            remaining.push(arg.clone());
        }
    }
    reordered.append(&mut remaining);
    reordered
}

/// Parses etcdctl's command line (`args` without the program name); prints help, version
/// and usage errors itself.
pub fn parse(def: &AppDef, argv0: &str, args: &[String]) -> Parsed {
    let help_name = std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| argv0.to_string());
    // urfave's App.Setup: help names first, then the help command (which gets none).
    let mut commands: Vec<(CmdDef, String)> = def
        .commands
        .iter()
        .map(|c| (c.clone(), format!("{help_name} {}", c.name)))
        .collect();
    commands.push((help_command(), String::new()));
    let mut flags = def.flags.clone();
    flags.push(HELP_FLAG);
    flags.push(VERSION_FLAG);
    let root = App {
        name: def.name.to_string(),
        help_name,
        usage: def.usage,
        description: "",
        args_usage: "",
        version: def.version,
        listed: commands.len(),
        commands,
        flags,
    };

    let mut set = FlagSet::new(&root.flags);
    let err = set.parse(args);
    if let Err(nerr) = set.normalize(&root.flags) {
        out(&format!("{nerr}\n"));
        show_app_help(&root);
        err_line(&nerr);
        return Parsed::Exit(1);
    }
    if let Err(e) = err {
        out(&format!("Incorrect Usage. {e}\n\n"));
        show_app_help(&root);
        err_line(&e);
        return Parsed::Exit(1);
    }
    if set.bool("help") || set.bool("h") {
        show_app_help(&root);
        return Parsed::Exit(0);
    }
    if set.bool("version") || set.bool("v") {
        out(&(def.version_text)(def.version));
        return Parsed::Exit(0);
    }
    let rest = set.args.clone();
    if let Some(first) = rest.first()
        && let Some((cmd, cmd_help_name)) = root.command(first)
    {
        let (cmd, cmd_help_name) = (cmd.clone(), cmd_help_name.clone());
        return run_command(&root, &cmd, &cmd_help_name, set, &rest[1..], Vec::new());
    }
    // The application's action is the help command's.
    match rest.first() {
        Some(name) => Parsed::Exit(show_command_help(&root, name)),
        None => {
            show_app_help(&root);
            Parsed::Exit(0)
        }
    }
}

fn run_command(
    app: &App,
    cmd: &CmdDef,
    help_name: &str,
    global: FlagSet,
    tail: &[String],
    mut path: Vec<&'static str>,
) -> Parsed {
    if !cmd.subs.is_empty() {
        return run_group(app, cmd, help_name, global, tail, path);
    }
    let mut flags = cmd.flags.clone();
    flags.push(HELP_FLAG);
    let args = reorder_args(&flags, tail);
    let mut set = FlagSet::new(&flags);
    let res = set.parse(&args).and_then(|_| set.normalize(&flags));
    if let Err(e) = res {
        out(&format!("Incorrect Usage: {e}\n\n"));
        show_command_help(app, cmd.name);
        err_line(&e);
        return Parsed::Exit(1);
    }
    if set.bool("h") || set.bool("help") {
        return Parsed::Exit(show_command_help(app, cmd.name));
    }
    if cmd.name == "help" {
        return match set.args.first() {
            Some(name) => Parsed::Exit(show_command_help(app, name)),
            None => {
                show_app_help(app);
                Parsed::Exit(0)
            }
        };
    }
    path.push(cmd.name);
    let args = set.args.clone();
    Parsed::Run(Box::new(Invocation {
        path,
        global,
        local: set,
        args,
    }))
}

/// urfave's `Command.startApp` + `App.RunAsSubcommand` for a command group.
fn run_group(
    parent: &App,
    cmd: &CmdDef,
    _help_name: &str,
    global: FlagSet,
    tail: &[String],
    mut path: Vec<&'static str>,
) -> Parsed {
    let name = format!("{} {}", parent.name, cmd.name);
    let mut commands: Vec<(CmdDef, String)> = cmd
        .subs
        .iter()
        .map(|c| (c.clone(), String::new()))
        .collect();
    let listed = commands.len();
    commands.push((help_command(), String::new()));
    for (c, hn) in commands.iter_mut() {
        *hn = format!("{name} {}", c.name);
    }
    let mut flags = cmd.flags.clone();
    flags.push(HELP_FLAG);
    let app = App {
        help_name: name.clone(),
        name,
        usage: cmd.usage,
        description: cmd.description,
        args_usage: cmd.args_usage,
        version: parent.version,
        commands,
        listed,
        flags,
    };
    let mut set = FlagSet::new(&app.flags);
    let err = set.parse(tail);
    if let Err(nerr) = set.normalize(&app.flags) {
        out(&format!("{nerr}\n\n"));
        show_subcommand_help(&app);
        err_line(&nerr);
        return Parsed::Exit(1);
    }
    if let Err(e) = err {
        out(&format!("Incorrect Usage. {e}\n\n"));
        show_subcommand_help(&app);
        err_line(&e);
        return Parsed::Exit(1);
    }
    if set.bool("h") || set.bool("help") {
        show_subcommand_help(&app);
        return Parsed::Exit(0);
    }
    let rest = set.args.clone();
    path.push(cmd.name);
    if let Some(first) = rest.first()
        && let Some((sub, sub_help_name)) = app.command(first)
    {
        let (sub, sub_help_name) = (sub.clone(), sub_help_name.clone());
        return run_command(&app, &sub, &sub_help_name, global, &rest[1..], path);
    }
    match rest.first() {
        Some(name) => Parsed::Exit(show_command_help(&app, name)),
        None => {
            show_subcommand_help(&app);
            Parsed::Exit(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_like_gos_flag_package() {
        let flags = vec![
            flag("output, o", Kind::Str, "simple", "output"),
            flag("debug", Kind::Bool, "", "debug"),
            flag("timeout", Kind::Dur, "2s", "t"),
        ];
        let mut set = FlagSet::new(&flags);
        set.parse(&s(&["-o", "json", "--debug", "get", "--x"]))
            .unwrap();
        set.normalize(&flags).unwrap();
        assert_eq!(set.str("output"), "json");
        assert!(set.bool("debug"));
        assert_eq!(set.dur("timeout"), Duration::from_secs(2));
        assert_eq!(set.args, s(&["get", "--x"]));

        let mut set = FlagSet::new(&flags);
        assert_eq!(
            set.parse(&s(&["--timeout", "abc"])).unwrap_err(),
            "invalid value \"abc\" for flag -timeout: parse error"
        );
        let mut set = FlagSet::new(&flags);
        assert_eq!(
            set.parse(&s(&["--debug=maybe"])).unwrap_err(),
            "invalid boolean value \"maybe\" for -debug: parse error"
        );
        let mut set = FlagSet::new(&flags);
        assert_eq!(
            set.parse(&s(&["--output"])).unwrap_err(),
            "flag needs an argument: -output"
        );
        let mut set = FlagSet::new(&flags);
        assert_eq!(
            set.parse(&s(&["---x"])).unwrap_err(),
            "bad flag syntax: ---x"
        );
        let mut set = FlagSet::new(&flags);
        set.parse(&s(&["--output", "json", "-o", "simple"]))
            .unwrap();
        assert_eq!(
            set.normalize(&flags).unwrap_err(),
            "Cannot use two forms of the same flag: o output"
        );
    }

    #[test]
    fn reorders_command_flags_as_urfave() {
        let flags = vec![
            flag("ttl", Kind::Int, "0", "ttl"),
            flag("recursive, r", Kind::Bool, "", "r"),
        ];
        assert_eq!(
            reorder_args(&flags, &s(&["k", "--ttl", "5", "v"])),
            s(&["--ttl", "5", "k", "v"])
        );
        assert_eq!(
            reorder_args(&flags, &s(&["k", "-x", "--", "a", "-r"])),
            s(&["--", "k", "-x", "a", "-r"])
        );
        assert_eq!(
            reorder_args(&flags, &s(&["-r", "k", "--", "cmd"])),
            s(&["-r", "k", "--", "cmd"])
        );
    }

    #[test]
    fn ints_parse_as_go_base_zero() {
        assert_eq!(parse_go_int("0x10"), Ok(16));
        assert_eq!(parse_go_int("010"), Ok(8));
        assert_eq!(parse_go_int("1_000"), Ok(1000));
        assert_eq!(parse_go_int("1__0"), Err("parse error"));
        assert_eq!(parse_go_int("0_10"), Ok(8));
        assert_eq!(parse_go_int("0x_1_0"), Ok(16));
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_go_int("9223372036854775808"),
            Err("value out of range")
        );
        assert_eq!(parse_go_int(""), Err("parse error"));
    }

    #[test]
    fn flags_print_as_urfave() {
        assert_eq!(
            flag_text(&flag(
                "output, o",
                Kind::Str,
                "simple",
                "output response in the given format (`simple`, `extended` or `json`)"
            )),
            "--output simple, -o simple\toutput response in the given format (simple, `extended` or `json`) (default: \"simple\")"
        );
        assert_eq!(
            flag_text(&flag(
                "readwrite, rw",
                Kind::Bool,
                "",
                "Grant read-write access"
            )),
            "--readwrite, --rw\tGrant read-write access"
        );
        assert_eq!(
            flag_text(&flag("ttl", Kind::Int, "0", "key time-to-live in seconds")),
            "--ttl value\tkey time-to-live in seconds (default: 0)"
        );
        assert_eq!(flag_text(&flag("p", Kind::Bool, "", "x")), "-p\tx");
    }
}
