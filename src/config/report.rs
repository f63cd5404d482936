//! Config errors the way compilers print them: `FILE:LINE:COL: error: message`, then the
//! offending line with a caret under the key (annotate-snippets, rustc's own renderer), then
//! the help. Also finds where a key path sits in a TOML or JSON file, and holds the problems
//! `validate` and `host` find. Pure: text in, text out.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One problem: the key path, where its value came from, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted key path, e.g. `services.web.backoff.factor`.
    pub key: String,
    /// The file, environment variable or flag that set the key, when known.
    pub origin: Option<String>,
    pub message: String,
    /// Where in its file the key is written, when it came from a file (filled by `load`).
    pub at: Option<Located>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            let text = render(at, &format!("`{}`: {}", self.key, self.message));
            return f.write_str(text.trim_end());
        }
        write!(f, "`{}`", self.key)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if let [one] = &self.0[..]
            && one.at.is_some()
        {
            // One located problem reads like a compiler's: `FILE:L:C: error: …` first.
            return write!(
                f,
                "{one}\nfix it, then check again with `guardian validate`"
            );
        }
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if e.at.is_some() {
                writeln!(f, "{e}")?;
            } else {
                writeln!(f, "  {}. {e}", i + 1)?;
            }
        }
        write!(f, "fix them, then check again with `guardian validate`")
    }
}

impl std::error::Error for ValidationErrors {}

/// Where a problem is: the file, the 1-based line and column, and that line's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The offending line, and the byte range under the caret within it.
    pub source: Option<(String, Range<usize>)>,
}

impl Located {
    /// From a byte offset into the file's text. The offset and the caret's range are moved
    /// onto char boundaries (a parser may point inside a multi-byte character) and kept
    /// within the line, so any offset and length from any parser is safe here.
    pub fn at(file: &Path, text: &str, offset: usize, len: usize) -> Self {
        let offset = text.floor_char_boundary(offset);
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line_text = &text[start..end];
        let line = text[..offset].matches('\n').count() + 1;
        let col = offset - start;
        // At least one character under the caret, unless the line ends here.
        let first = line_text[col..].chars().next().map_or(0, char::len_utf8);
        let to = line_text.ceil_char_boundary((col + len).max(col + first).min(line_text.len()));
        Located {
            file: file.to_owned(),
            line,
            column: line_text[..col].chars().count() + 1,
            source: Some((line_text.to_owned(), col..to)),
        }
    }

    /// From a 1-based line and column that a parser reported.
    pub fn line_col(file: &Path, text: &str, line: usize, column: usize) -> Self {
        let start: usize = text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        let this = text[start.min(text.len())..].lines().next().unwrap_or("");
        let byte = this
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(this.len(), |(i, _)| i);
        Located::at(file, text, start + byte, 1)
    }
}

/// `FILE:L:C: error: first line of the message`, the snippet, then the rest of the message.
pub fn render(loc: &Located, message: &str) -> String {
    let mut lines = message.lines();
    let head = lines.next().unwrap_or("");
    let mut out = format!(
        "{}:{}:{}: error: {head}\n",
        loc.file.display(),
        loc.line,
        loc.column
    );
    if let Some((text, range)) = &loc.source {
        let start = text.floor_char_boundary(range.start);
        let range = start..text.ceil_char_boundary(range.end.max(start));
        let report = &[Group::with_level(Level::ERROR).element(
            Snippet::source(text.as_str())
                .line_start(loc.line)
                .annotation(AnnotationKind::Primary.span(range)),
        )];
        out += &Renderer::plain().render(report).to_string();
        out.push('\n');
    }
    for rest in lines {
        out += rest;
        out.push('\n');
    }
    out
}

/// Where `key` (a dotted path such as `services.api.depends_on.db`, maybe ending in `[2]`)
/// is written in the file: the byte offset and length of its key (or its array item).
pub fn locate(text: &str, json: bool, key: &str) -> Option<(usize, usize)> {
    let (path, index) = match key.split_once('[') {
        Some((p, i)) => (p, i.trim_end_matches(']').parse::<usize>().ok()),
        None => (key, None),
    };
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    if json {
        return locate_json(text, &parts);
    }
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut found = None;
    for (i, part) in parts.iter().enumerate() {
        let (k, item) = table.get_key_value(part)?;
        let span = k.span().or_else(|| item.span())?;
        found = Some((span.start, span.len()));
        if i + 1 == parts.len() {
            if let (Some(n), Some(arr)) = (index, item.as_array())
                && let Some(span) = arr.get(n).and_then(|v| v.span())
            {
                found = Some((span.start, span.len()));
            }
            break;
        }
        table = match item.as_table_like() {
            Some(t) => t,
            None => break,
        };
    }
    found
}

/// JSON has no span-keeping parser in the tree: each key is found as `"key"` after the one
/// before it, which is right for any file a person writes (keys in order, no tricks).
fn locate_json(text: &str, parts: &[&str]) -> Option<(usize, usize)> {
    let mut from = 0;
    let mut found = None;
    for part in parts {
        let quoted = format!("\"{part}\"");
        let at = from + text[from..].find(&quoted)?;
        found = Some((at, quoted.len()));
        from = at + quoted.len();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = "[guardian]\nlog_level = \"x\"\n\n[services.api]\ncommand = [\"a\", \"{nope}\"]\ndepends_on = { db = \"ready\" }\n";

    #[test]
    fn keys_are_found_in_toml_and_json() {
        let at = |key: &str| {
            locate(TOML, false, key).map(|(o, l)| {
                let loc = Located::at(Path::new("g.toml"), TOML, o, l);
                (loc.line, loc.column, TOML[o..o + l].to_owned())
            })
        };
        assert_eq!(at("guardian.log_level"), Some((2, 1, "log_level".into())));
        assert_eq!(at("services.api.depends_on.db"), Some((6, 16, "db".into())));
        assert_eq!(
            at("services.api.command[1]"),
            Some((5, 17, "\"{nope}\"".into()))
        );
        assert_eq!(at("services.web"), None);
        let json = "{\n  \"services\": {\n    \"api\": { \"port\": 0 }\n  }\n}";
        let (o, l) = locate(json, true, "services.api.port").unwrap();
        let loc = Located::at(Path::new("g.json"), json, o, l);
        assert_eq!((loc.line, loc.column), (3, 14));
    }

    #[test]
    fn errors_print_file_line_column_then_the_line_with_a_caret() {
        let (o, l) = locate(TOML, false, "services.api.depends_on.db").unwrap();
        let loc = Located::at(Path::new("g.toml"), TOML, o, l);
        let text = render(
            &loc,
            "`services.api.depends_on.db`: there is no service `db`\n  1. add it",
        );
        let want = "g.toml:6:16: error: `services.api.depends_on.db`: there is no service `db`\n  |\n6 | depends_on = { db = \"ready\" }\n  |                ^^\n  1. add it\n";
        assert_eq!(text, want);
    }
}
