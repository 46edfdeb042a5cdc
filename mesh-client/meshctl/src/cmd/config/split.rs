//! A file's YAML documents, each on its own, with its line numbers kept.
//!
//! Every loader reads one document here, so problems in one document do not hide the others
//! and each kind goes to its own loader. Documents are split at `---` lines (and ended by
//! `...` lines) the way YAML does; each document's text is padded with the lines before it, so
//! the parsers' "at line N column M" still point into the file.

/// One document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Document {
    /// Its position in the file, counting from 1 as the mesh's loaders do.
    pub(super) number: usize,
    /// The document alone, preceded by blank lines up to where it starts in the file.
    pub(super) text: String,
}

/// Whether `line` is a document marker (`---` or `...`, alone or followed by whitespace), and
/// if so, the rest of the line that belongs to the next document.
fn marker(line: &str) -> Option<(bool, &str)> {
    for (token, starts) in [("---", true), ("...", false)] {
        if let Some(rest) = line.strip_prefix(token) {
            if rest.is_empty() || rest.starts_with([' ', '\t', '\r']) {
                return Some((starts, rest));
            }
        }
    }
    None
}

/// Whether a document's text holds anything but blank lines, comments and directives.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
    })
}

/// Ends the document being collected: kept if a `---` opened it or it has content.
fn finish(current: &mut String, explicit: bool, out: &mut Vec<Document>) {
    if explicit || has_content(current) {
        out.push(Document {
            number: out.len() + 1,
            text: std::mem::take(current),
        });
    }
    current.clear();
}

/// Splits `text` into its documents. The part before the first `---` counts as a document
/// only if it has content; every `---` starts one (possibly empty), as in a YAML stream.
pub(super) fn documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    // The document being collected: its text and whether a `---` opened it.
    let mut current = String::new();
    let mut explicit = false;
    for (index, line) in text.split('\n').enumerate() {
        match marker(line) {
            Some((starts, rest)) => {
                finish(&mut current, explicit, &mut out);
                explicit = starts;
                // Keep line numbers: blank lines for everything before, then the rest of the
                // marker line in its original columns.
                current = "\n".repeat(index);
                if starts {
                    current.push_str("   ");
                    current.push_str(rest);
                }
                current.push('\n');
            }
            None => {
                if current.is_empty() && index > 0 {
                    current = "\n".repeat(index);
                }
                current.push_str(line);
                current.push('\n');
            }
        }
    }
    finish(&mut current, explicit, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(yaml: &str) -> Vec<(usize, String)> {
        documents(yaml)
            .into_iter()
            .map(|d| (d.number, d.text.trim().to_owned()))
            .collect()
    }

    #[test]
    fn splits_like_a_yaml_stream() {
        assert_eq!(
            texts("a: 1\n---\nb: 2\n"),
            [(1, "a: 1".into()), (2, "b: 2".into())]
        );
        assert_eq!(texts("# header\n---\na: 1\n"), [(1, "a: 1".into())]);
        assert_eq!(
            texts("---\na: 1\n---\n"),
            [(1, "a: 1".into()), (2, String::new())]
        );
        assert_eq!(
            texts("--- {a: 1}\n--- # c\nb: 2"),
            [(1, "{a: 1}".into()), (2, "# c\nb: 2".into())]
        );
        assert_eq!(
            texts("a: 1\n...\n---\nb: 2\n"),
            [(1, "a: 1".into()), (2, "b: 2".into())]
        );
        assert_eq!(texts("a: '---'\n----\n"), [(1, "a: '---'\n----".into())]);
        assert!(texts("").is_empty() && texts("# only\n\n").is_empty());
    }

    #[test]
    fn line_numbers_are_kept() {
        let docs = documents("a: 1\n---\n\nb: [\n");
        let second = &docs[1].text;
        assert_eq!(second.lines().position(|l| l.starts_with("b:")), Some(3));
        let docs = documents("--- x: 1\n");
        assert_eq!(docs[0].text.trim_end(), "    x: 1");
    }
}
