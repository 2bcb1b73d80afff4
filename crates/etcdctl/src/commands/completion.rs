//! `completion <shell>`: the command cobra adds. Our scripts complete command and
//! subcommand names and flags (cobra's scripts call back into the binary instead).

use crate::cli::{Cmd, Kind, flag};

pub const LONG: &str = "Generate the autocompletion script for etcdctl for the specified shell.
See each sub-command's help for details on how to use the generated script.
";

const BASH: &str = "Generate the autocompletion script for the bash shell.

This script depends on the 'bash-completion' package.
If it is not installed already, you can install it via your OS's package manager.

To load completions in your current shell session:

\tsource <(etcdctl completion bash)

To load completions for every new session, execute once:

#### Linux:

\tetcdctl completion bash > /etc/bash_completion.d/etcdctl

#### macOS:

\tetcdctl completion bash > $(brew --prefix)/etc/bash_completion.d/etcdctl

You will need to start a new shell for this setup to take effect.
";

const FISH: &str = "Generate the autocompletion script for the fish shell.

To load completions in your current shell session:

\tetcdctl completion fish | source

To load completions for every new session, execute once:

\tetcdctl completion fish > ~/.config/fish/completions/etcdctl.fish

You will need to start a new shell for this setup to take effect.
";

const POWERSHELL: &str = "Generate the autocompletion script for powershell.

To load completions in your current shell session:

\tetcdctl completion powershell | Out-String | Invoke-Expression

To load completions for every new session, add the output of the above command
to your powershell profile.
";

const ZSH: &str = "Generate the autocompletion script for the zsh shell.

If shell completion is not already enabled in your environment you will need
to enable it.  You can execute the following once:

\techo \"autoload -U compinit; compinit\" >> ~/.zshrc

To load completions in your current shell session:

\tsource <(etcdctl completion zsh); compdef _etcdctl etcdctl

To load completions for every new session, execute once:

#### Linux:

\tetcdctl completion zsh > \"${fpath[1]}/_etcdctl\"

#### macOS:

\tetcdctl completion zsh > $(brew --prefix)/share/zsh/site-functions/_etcdctl

You will need to start a new shell for this setup to take effect.
";

pub fn tree() -> Cmd {
    let sub = |use_line: &'static str, short: &'static str, long: &'static str, no_flags: bool| {
        let mut c = Cmd::new(use_line, short).long(long).flags(vec![flag(
            "no-descriptions",
            Kind::Bool,
            "false",
            "disable completion descriptions",
        )]);
        c.no_flags_in_use_line = no_flags;
        c
    };
    Cmd::group(
        "completion",
        "Generate the autocompletion script for the specified shell",
        vec![
            sub(
                "bash",
                "Generate the autocompletion script for bash",
                BASH,
                true,
            ),
            sub(
                "fish",
                "Generate the autocompletion script for fish",
                FISH,
                false,
            ),
            sub(
                "powershell",
                "Generate the autocompletion script for powershell",
                POWERSHELL,
                false,
            ),
            sub(
                "zsh",
                "Generate the autocompletion script for zsh",
                ZSH,
                false,
            ),
        ],
    )
    .long(LONG)
}

/// "cmd:sub1 sub2" lines for every command with subcommands, plus the top level.
fn words(root: &Cmd) -> (String, Vec<(String, String)>) {
    let top: Vec<&str> = root.subs.iter().map(|c| c.name).collect();
    let mut subs = Vec::new();
    for c in &root.subs {
        if !c.subs.is_empty() {
            subs.push((
                c.name.to_string(),
                c.subs.iter().map(|s| s.name).collect::<Vec<_>>().join(" "),
            ));
        }
    }
    (top.join(" "), subs)
}

pub fn run(shell: &str) -> i32 {
    let root = crate::tree();
    let (top, subs) = words(&root);
    let s = match shell {
        "bash" => {
            let mut cases = String::new();
            for (c, w) in &subs {
                cases.push_str(&format!(
                    "        {c}) COMPREPLY=($(compgen -W \"{w}\" -- \"$cur\")) ;;\n"
                ));
            }
            format!(
                "# bash completion for etcdctl\n_etcdctl() {{\n    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n    if [ \"$COMP_CWORD\" -eq 1 ]; then\n        COMPREPLY=($(compgen -W \"{top}\" -- \"$cur\"))\n        return\n    fi\n    case \"${{COMP_WORDS[1]}}\" in\n{cases}        *) COMPREPLY=() ;;\n    esac\n}}\ncomplete -F _etcdctl etcdctl\n"
            )
        }
        "zsh" => {
            let mut cases = String::new();
            for (c, w) in &subs {
                cases.push_str(&format!("    {c}) compadd {w} ;;\n"));
            }
            format!(
                "#compdef etcdctl\n_etcdctl() {{\n  if (( CURRENT == 2 )); then\n    compadd {top}\n    return\n  fi\n  case $words[2] in\n{cases}  esac\n}}\ncompdef _etcdctl etcdctl\n"
            )
        }
        "fish" => {
            let mut s = format!(
                "# fish completion for etcdctl\ncomplete -c etcdctl -f -n '__fish_use_subcommand' -a '{top}'\n"
            );
            for (c, w) in &subs {
                s.push_str(&format!(
                    "complete -c etcdctl -f -n '__fish_seen_subcommand_from {c}' -a '{w}'\n"
                ));
            }
            s
        }
        _ => {
            let mut s = String::from(
                "# powershell completion for etcdctl\nRegister-ArgumentCompleter -Native -CommandName 'etcdctl' -ScriptBlock {\n    param($wordToComplete, $commandAst, $cursorPosition)\n    $words = $commandAst.CommandElements | ForEach-Object { $_.ToString() }\n    $list = @{\n",
            );
            s.push_str(&format!("        '' = '{top}'\n"));
            for (c, w) in &subs {
                s.push_str(&format!("        '{c}' = '{w}'\n"));
            }
            s.push_str("    }\n    $key = if ($words.Count -gt 2 -or ($words.Count -eq 2 -and $wordToComplete -eq '')) { $words[1] } else { '' }\n    ($list[$key] -split ' ') | Where-Object { $_ -like \"$wordToComplete*\" }\n}\n");
            s
        }
    };
    print!("{s}");
    0
}
