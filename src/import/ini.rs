//! The INI dialect supervisord reads: Python's `RawConfigParser` with
//! `inline_comment_prefixes = (";", "#")` and `strict = False` (supervisor/options.py,
//! `UnhosedConfigParser`), with each value's line kept for the left-out list.
//!
//! Its rules, as Python's `configparser._read` applies them:
//! - a line whose first non-blank character is `;` or `#` is a comment; elsewhere `;` or
//!   `#` starts a comment only at the start of the line or after whitespace, so
//!   `command=sh -c 'a;b'` keeps its `;`;
//! - `[header]` opens a section (a repeated one continues, strict = False); `key = value`
//!   or `key: value`, split at the first `=` or `:`, the key lowercased;
//! - a line indented deeper than its key continues the value (joined with a newline);
//!   a blank line inside a value is kept in it, trailing ones are not;
//! - a line that is none of these is an error with its line.
//!
//! A crate (`configparser`) was tried first: it strips `;` anywhere in a line, which cuts
//! commands such as `sh -c 'a; b'`, and it does not keep lines.

use std::path::{Path, PathBuf};

/// One `key = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
    pub file: PathBuf,
}

/// One section, with its entries in file order (a later key replaces an earlier one).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub file: PathBuf,
    pub entries: Vec<Entry>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// Parses `text` (from `file`) into `sections`, appending to those already there.
pub fn parse(file: &Path, text: &str, sections: &mut Vec<Section>) -> Result<(), String> {
    let mut current: Option<usize> = None;
    // The entry a continuation line would extend, and its key's indent.
    let mut open: Option<(usize, usize)> = None;
    // Blank lines seen inside a value, kept only if the value goes on after them.
    let mut blanks = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim_end_matches('\r');
        let cut = comment_start(line);
        let value = line[..cut].trim();
        if value.is_empty() {
            if cut == line.len() && open.is_some() {
                blanks += 1;
            }
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let (Some(s), Some((e, level))) = (current, open)
            && indent > level
        {
            let entry = &mut sections[s].entries[e];
            for _ in 0..blanks {
                entry.value.push('\n');
            }
            entry.value.push('\n');
            entry.value.push_str(value);
            blanks = 0;
            continue;
        }
        blanks = 0;
        if let Some(rest) = value.strip_prefix('[')
            && let Some(end) = rest.rfind(']')
            && end > 0
        {
            let name = rest[..end].to_owned();
            let at = match sections.iter().position(|s| s.name == name) {
                Some(at) => at,
                None => {
                    sections.push(Section {
                        name,
                        line: lineno,
                        file: file.to_owned(),
                        entries: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            current = Some(at);
            open = None;
            continue;
        }
        let Some(s) = current else {
            return Err(format!(
                "{}:{lineno}: a key before any [section]: `{value}`\n  supervisord files start with a section such as [supervisord] or [program:NAME]",
                file.display()
            ));
        };
        let Some(split) = value.find(['=', ':']) else {
            return Err(format!(
                "{}:{lineno}: `{value}` is neither a [section] nor `key = value`",
                file.display()
            ));
        };
        let key = value[..split].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(format!(
                "{}:{lineno}: `{value}` has no key before its `{}`",
                file.display(),
                &value[split..=split]
            ));
        }
        let entry = Entry {
            key,
            value: value[split + 1..].trim().to_owned(),
            line: lineno,
            file: file.to_owned(),
        };
        let entries = &mut sections[s].entries;
        let e = match entries.iter().position(|x| x.key == entry.key) {
            Some(e) => {
                entries[e] = entry;
                e
            }
            None => {
                entries.push(entry);
                entries.len() - 1
            }
        };
        open = Some((e, indent));
    }
    Ok(())
}

/// Where a comment starts: a whole-line `;`/`#`, or one after whitespace.
fn comment_start(line: &str) -> usize {
    let trimmed = line.trim_start();
    if trimmed.starts_with(';') || trimmed.starts_with('#') {
        return 0;
    }
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if (c == ';' || c == '#') && prev_space {
            return i;
        }
        prev_space = c.is_whitespace();
    }
    line.len()
}

/// supervisord's expansion (Python `%` formatting with a dict): `%(name)s`, `%(name)d`
/// (with flags and width), `%%`. `lookup` answers a name; an unknown one is an error
/// naming what there is.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
            continue;
        }
        let Some(r) = after.strip_prefix('(') else {
            return Err(format!(
                "a lone `%` in `{value}`: write `%%` for a percent sign"
            ));
        };
        let Some(close) = r.find(')') else {
            return Err(format!("`%(` without `)` in `{value}`"));
        };
        let name = &r[..close];
        let spec_end = r[close + 1..]
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| format!("`%({name})` has no conversion such as `s` in `{value}`"))?;
        let spec = &r[close + 1..close + 2 + spec_end];
        let got = lookup(name).ok_or_else(|| format!("`%({name}){spec}` cannot be expanded"))?;
        out.push_str(&pad(&got, &spec[..spec.len() - 1]));
        rest = &r[close + 2 + spec_end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `%02d`-style flags and width over an already formatted value.
fn pad(value: &str, flags: &str) -> String {
    let zero = flags.starts_with('0');
    let left = flags.starts_with('-');
    let width: usize = flags.trim_start_matches(['0', '-']).parse().unwrap_or(0);
    if value.len() >= width {
        return value.to_owned();
    }
    let fill = width - value.len();
    if left {
        format!("{value}{}", " ".repeat(fill))
    } else if zero {
        format!("{}{value}", "0".repeat(fill))
    } else {
        format!("{}{value}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<Section> {
        let mut s = Vec::new();
        parse(Path::new("s.conf"), text, &mut s).unwrap();
        s
    }

    #[test]
    fn pythons_rules() {
        let s = parsed(
            "; a comment\n[program:web]\nCommand = sh -c 'a;b' ; the comment\nenvironment=A=1,\n    B=2\n\n  C=3\n\n# end\n[program:web]\nuser: nobody\n",
        );
        assert_eq!(s.len(), 1, "a repeated section continues");
        let web = &s[0];
        assert_eq!(web.get("command").unwrap().value, "sh -c 'a;b'");
        assert_eq!(web.get("command").unwrap().line, 3);
        assert_eq!(web.get("environment").unwrap().value, "A=1,\nB=2\n\nC=3");
        assert_eq!(web.get("user").unwrap().value, "nobody");
        assert_eq!(web.get("user").unwrap().line, 11);
    }

    #[test]
    fn errors_name_their_line() {
        let mut s = Vec::new();
        let e = parse(Path::new("s.conf"), "command=x\n", &mut s).unwrap_err();
        assert!(e.starts_with("s.conf:1:"), "{e}");
        let e = parse(Path::new("s.conf"), "[a]\nb=1\njunk\n", &mut s).unwrap_err();
        assert!(e.starts_with("s.conf:3:"), "{e}");
    }

    #[test]
    fn expansion_is_python_percent_formatting() {
        let look = |n: &str| match n {
            "program_name" => Some("web".to_owned()),
            "process_num" => Some("3".to_owned()),
            _ => None,
        };
        assert_eq!(
            expand("%(program_name)s-%(process_num)02d 100%%", &look).unwrap(),
            "web-03 100%"
        );
        assert!(expand("%(nope)s", &look).unwrap_err().contains("nope"));
        assert!(expand("50%", &look).is_err());
    }
}
