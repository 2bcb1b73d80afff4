//! Go's `text/tabwriter` (flags 0), which etcdctl's help output goes through: tab-terminated
//! cells aligned in column blocks; a line without tabs ends every block.

struct Cell {
    text: String,
    width: usize,
}

/// Formats `text` as a `tabwriter.Writer` initialised with these settings would print it.
pub fn format(
    text: &str,
    minwidth: usize,
    tabwidth: usize,
    padding: usize,
    pad_with_tabs: bool,
) -> String {
    let mut out = String::new();
    let mut block: Vec<Vec<Cell>> = Vec::new();
    let settings = Settings {
        minwidth,
        tabwidth,
        padding,
        pad_with_tabs,
    };
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<Cell> = line
            .split('\t')
            .map(|t| Cell {
                text: t.to_string(),
                width: t.chars().count(),
            })
            .collect();
        let single = cells.len() == 1;
        block.push(cells);
        let last = i + 1 == lines.len();
        if single || last {
            let mut widths = Vec::new();
            settings.format(&block, 0, block.len(), &mut widths, &mut out, last);
            block.clear();
        }
    }
    out
}

struct Settings {
    minwidth: usize,
    tabwidth: usize,
    padding: usize,
    pad_with_tabs: bool,
}

impl Settings {
    fn format(
        &self,
        lines: &[Vec<Cell>],
        line0: usize,
        line1: usize,
        widths: &mut Vec<usize>,
        out: &mut String,
        final_block: bool,
    ) {
        let column = widths.len();
        let mut line0 = line0;
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            self.write_lines(lines, line0, this, widths, out, final_block);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 {
                let line = &lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                let w = line[column].width + self.padding;
                if w > width {
                    width = w;
                }
                this += 1;
            }
            widths.push(width);
            self.format(lines, line0, this, widths, out, final_block);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, line0, line1, widths, out, final_block);
    }

    fn write_lines(
        &self,
        lines: &[Vec<Cell>],
        line0: usize,
        line1: usize,
        widths: &[usize],
        out: &mut String,
        final_block: bool,
    ) {
        for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
            for (j, c) in line.iter().enumerate() {
                out.push_str(&c.text);
                if j < widths.len() && j + 1 < line.len() {
                    self.pad(c.width, widths[j], out);
                }
            }
            let is_last = final_block && i + 1 == lines.len();
            if !is_last {
                out.push('\n');
            }
        }
    }

    fn pad(&self, textw: usize, cellw: usize, out: &mut String) {
        if self.pad_with_tabs {
            if self.tabwidth == 0 {
                return;
            }
            let cellw = cellw.div_ceil(self.tabwidth) * self.tabwidth;
            let n = cellw.saturating_sub(textw);
            for _ in 0..n.div_ceil(self.tabwidth) {
                out.push('\t');
            }
        } else {
            for _ in 0..cellw.saturating_sub(textw) {
                out.push(' ');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_blocks_with_tabs() {
        let s = super::format(
            "A:\n  --a=1\tx\n  --longer-flag=2\ty\nB:\n\tz\n",
            0,
            8,
            1,
            true,
        );
        assert_eq!(s, "A:\n  --a=1\t\t\tx\n  --longer-flag=2\ty\nB:\n\tz\n");
    }
}
