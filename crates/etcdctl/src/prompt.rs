//! Reading passwords and words from the terminal, as speakeasy and `fmt.Scanf` do.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn stty(arg: &str) {
    stty_with(arg, Stdio::null());
}

fn stty_with(arg: &str, stderr: Stdio) {
    use std::os::unix::process::CommandExt;
    let _ = Command::new("/bin/stty")
        .arg0("stty")
        .arg(arg)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(stderr)
        .status();
}

/// One line from stdin, read a byte at a time so nothing after it is consumed.
pub fn read_line_raw() -> Result<String, String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => buf.push(b[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let s = String::from_utf8_lossy(&buf).into_owned();
    Ok(s.strip_suffix('\r').unwrap_or(&s).to_string())
}

/// speakeasy's `Ask`: the prompt on stdout, echo off while the password is typed.
pub fn ask_password(prompt: &str) -> Result<String, String> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    stty("-echo");
    let line = read_line_raw();
    stty("echo");
    println!();
    line.map(|l| l.trim().to_string())
        .map_err(|e| format!("failed during password entry: {e}"))
}

/// speakeasy's `Ask` to the letter, as the v2 etcdctl shows it: `stty` complains on our
/// stderr when stdin is no terminal, and the line is kept as typed (but a final `\r`).
pub fn speakeasy_ask(prompt: &str) -> Result<String, String> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    stty_with("-echo", Stdio::inherit());
    let line = read_line_raw();
    stty_with("echo", Stdio::inherit());
    println!();
    line.map_err(|e| format!("failed during password entry: {e}"))
}

/// `fmt.Scanf("%s")`: the first word of the next line (empty at end of input).
pub fn scan_word() -> String {
    read_line_raw()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}
