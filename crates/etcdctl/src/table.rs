//! The tables of `--write-out=table`, drawn as olekukonko/tablewriter draws them for etcdctl:
//! upper-cased centred headers, right-aligned cells, words wrapped at 30 columns.

const MAX_COL_WIDTH: usize = 30;

fn title(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out: Vec<char> = chars.clone();
    let num_or_space = |c: char| c.is_ascii_digit() || c == ' ';
    for (i, c) in chars.iter().enumerate() {
        match c {
            '_' => out[i] = ' ',
            '.' if (i != 0 && !num_or_space(chars[i - 1]))
                || (i + 1 != chars.len() && !num_or_space(chars[i + 1])) =>
            {
                out[i] = ' '
            }
            _ => {}
        }
    }
    let s: String = out.into_iter().collect();
    let s = s.trim();
    if s.is_empty() && !name.is_empty() {
        return " ".to_string();
    }
    s.to_uppercase()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// tablewriter's WrapString: greedy word wrap at `lim`, words never split.
fn wrap(s: &str, lim: usize) -> Vec<String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.is_empty() {
        return vec![String::new()];
    }
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in words {
        if cur.is_empty() {
            cur.push_str(w);
        } else if width(&cur) + 1 + width(w) <= lim {
            cur.push(' ');
            cur.push_str(w);
        } else {
            lines.push(std::mem::take(&mut cur));
            cur.push_str(w);
        }
    }
    lines.push(cur);
    lines
}

fn cell_lines(s: &str) -> Vec<String> {
    let w = width(s);
    if w <= MAX_COL_WIDTH || !s.contains(' ') {
        return vec![s.to_string()];
    }
    wrap(s, MAX_COL_WIDTH)
}

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let ncols = header.len();
    let header: Vec<Vec<String>> = header.iter().map(|h| cell_lines(&title(h))).collect();
    let body: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell_lines(c)).collect())
        .collect();
    let mut widths = vec![0usize; ncols];
    for (i, h) in header.iter().enumerate() {
        for l in h {
            widths[i] = widths[i].max(width(l));
        }
    }
    for r in &body {
        for (i, c) in r.iter().enumerate().take(ncols) {
            for l in c {
                widths[i] = widths[i].max(width(l));
            }
        }
    }
    let sep = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = String::new();
    out.push_str(&sep);
    let hlines = header.iter().map(|h| h.len()).max().unwrap_or(1);
    for li in 0..hlines {
        out.push('|');
        for (i, h) in header.iter().enumerate() {
            let text = h.get(li).map(String::as_str).unwrap_or("");
            let gap = widths[i] - width(text);
            let left = gap / 2;
            out.push(' ');
            out.push_str(&" ".repeat(left));
            out.push_str(text);
            out.push_str(&" ".repeat(gap - left));
            out.push_str(" |");
        }
        out.push('\n');
    }
    out.push_str(&sep);
    for r in &body {
        let n = r.iter().map(|c| c.len()).max().unwrap_or(1);
        for li in 0..n {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let text = r
                    .get(i)
                    .and_then(|c| c.get(li))
                    .map(String::as_str)
                    .unwrap_or("");
                out.push(' ');
                out.push_str(&" ".repeat(w - width(text)));
                out.push_str(text);
                out.push_str(" |");
            }
            out.push('\n');
        }
    }
    out.push_str(&sep);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_like_tablewriter() {
        let t = super::render(
            &["hash", "revision"],
            &[vec!["ce6801a1".into(), "8".into()]],
        );
        assert_eq!(
            t,
            "+----------+----------+\n|   HASH   | REVISION |\n+----------+----------+\n| ce6801a1 |        8 |\n+----------+----------+\n"
        );
    }
}
