//! The flag syntax of etcd's cobra subcommands (`etcd gateway start`, `etcd grpc-proxy
//! start`): `--name value`, `--name=value`, one or two dashes, flags before or after the
//! subcommand word, booleans taking no separate value.

/// Splits `args` into the words that are not flags (returned) and flags, each handed to
/// `set` with its value: the inline one or the next argument for a flag `is_bool` says takes
/// one; only an inline one (`--flag=false`) for a boolean.
pub fn parse(
    args: &[String],
    is_bool: impl Fn(&str) -> bool,
    mut set: impl FnMut(&str, Option<String>) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            words.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let value = if is_bool(name) || inline.is_some() {
            inline
        } else {
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: --{name}"))?;
            i += 1;
            Some(v)
        };
        set(name, value)?;
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn words_values_and_booleans() {
        let args: Vec<String> = ["--a", "1", "start", "-b=2", "--flag", "--c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut seen = Vec::new();
        let words = parse(
            &args,
            |n| n == "flag",
            |n, v| {
                seen.push((n.to_string(), v));
                Ok(())
            },
        );
        assert_eq!(words.unwrap_err(), "flag needs an argument: --c");
        assert_eq!(
            seen,
            [
                ("a".to_string(), Some("1".to_string())),
                ("b".to_string(), Some("2".to_string())),
                ("flag".to_string(), None),
            ]
        );
    }
}
