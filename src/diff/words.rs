//! A word-level diff of two texts, for a reviewer: a chunk of a thousand characters whose one
//! word changed should read as that word, not as two paragraphs. The layout is git's
//! `--word-diff=plain` (`[-old-]{+new+}`), which reviewers already read, with long unchanged
//! stretches cut down to a few words of context around each change.

use std::time::Duration;

use similar::{ChangeTag, TextDiff};

/// Unchanged words kept on each side of a change.
const CONTEXT_WORDS: usize = 6;

/// How long one text's diff may search before it settles for a coarser one (a rewritten
/// chunk then shows as one removal and one insertion, which is what it is).
const TIMEOUT: Duration = Duration::from_millis(50);

/// `old` → `new` as one line of unchanged words, `[-removed-]` and `{+added+}`, long unchanged
/// stretches shortened to ` … `. Newlines are shown as `⏎` so the result stays on one line.
pub fn word_diff(old: &str, new: &str) -> String {
    let diff = TextDiff::configure().timeout(TIMEOUT).diff_words(old, new);
    // Runs of one tag: (tag, text).
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        let text = change.value();
        match runs.last_mut() {
            Some((tag, run)) if *tag == change.tag() => run.push_str(text),
            _ => runs.push((change.tag(), text.to_string())),
        }
    }
    let last = runs.len().saturating_sub(1);
    let mut out = String::new();
    for (i, (tag, text)) in runs.iter().enumerate() {
        match tag {
            ChangeTag::Equal => out.push_str(&shorten(text, i == 0, i == last)),
            ChangeTag::Delete => {
                out.push_str("[-");
                out.push_str(text);
                out.push_str("-]");
            }
            ChangeTag::Insert => {
                out.push_str("{+");
                out.push_str(text);
                out.push_str("+}");
            }
        }
    }
    out.replace("\r\n", "⏎").replace('\n', "⏎")
}

/// An unchanged stretch with only the words next to a change kept: its end when a change
/// follows, its start when one precedes.
fn shorten(text: &str, first: bool, last: bool) -> String {
    // Words with the blanks after them; a stretch that starts with a blank has it alone first.
    let tokens: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    let is_word = |token: &str| !token.trim().is_empty();
    let keep_start = if first { 0 } else { CONTEXT_WORDS };
    let keep_end = if last { 0 } else { CONTEXT_WORDS };
    // Where the first `keep_start` words end, and where the last `keep_end` begin.
    let word_positions: Vec<usize> = (0..tokens.len()).filter(|&i| is_word(tokens[i])).collect();
    if word_positions.len() <= keep_start + keep_end + 1 {
        return text.to_string();
    }
    let head_end = match keep_start {
        0 => 0,
        n => word_positions[n - 1] + 1,
    };
    let tail_start = match keep_end {
        0 => tokens.len(),
        n => word_positions[word_positions.len() - n],
    };
    let mut out = tokens[..head_end].concat();
    if !out.is_empty() && !out.ends_with(char::is_whitespace) {
        out.push(' ');
    }
    if keep_end == 0 {
        out.push('…');
    } else {
        out.push_str("… ");
        out.push_str(tokens[tail_start..].concat().trim_start());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_changed_in_a_long_text_shows_that_word_with_some_context() {
        let old = "By default Cargo pulls dependencies from crates.io, and a bare version string \
                   such as 0.1.12 under dependencies is a caret requirement that permits any \
                   compatible release.";
        let new = old.replace("pulls", "fetches");
        let shown = word_diff(old, &new);
        assert_eq!(
            shown,
            "By default Cargo [-pulls-]{+fetches+} dependencies from crates.io, and a bare …"
        );
    }

    #[test]
    fn a_change_in_the_middle_keeps_context_on_both_sides() {
        let old = "one two three four five six seven eight nine ten eleven twelve thirteen \
                   fourteen fifteen sixteen seventeen eighteen nineteen twenty";
        let new = old.replace("ten", "TEN");
        let shown = word_diff(old, &new);
        assert!(shown.starts_with("… "), "{shown}");
        assert!(shown.contains("five six seven eight nine [-ten-]{+TEN+} eleven"));
        assert!(shown.ends_with(" …"), "{shown}");
    }

    #[test]
    fn identical_texts_and_newlines_stay_on_one_line() {
        assert_eq!(word_diff("a\nb", "a\nc"), "a⏎[-b-]{+c+}");
        assert_eq!(word_diff("same", "same"), "same");
        assert_eq!(word_diff("", "new text"), "{+new text+}");
    }
}
