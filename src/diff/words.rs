//! A word-level diff of two texts, for a reviewer: a chunk of a thousand characters whose one
//! word changed should read as that word, not as two paragraphs. The layout is git's
//! `--word-diff=plain` (`[-old-]{+new+}`), which reviewers already read, with long unchanged
//! stretches cut down to a few words of context around each change.

use similar::{Algorithm, ChangeTag, TextDiff};

/// Unchanged words kept on each side of a change.
const CONTEXT_WORDS: usize = 6;

/// Past this many words on either side, the texts are shown as one removal and one
/// insertion: the diff's cost grows with the product of the lengths, and a time limit would
/// make the output depend on the machine's load (the same files must give the same report).
const MOST_WORDS: usize = 4000;

/// The most characters of one removed or inserted stretch that are shown.
const MOST_CHARS: usize = 600;

/// `old` → `new` as one line of unchanged words, `[-removed-]` and `{+added+}`, long unchanged
/// stretches shortened to ` … `, long changes cut. Newlines are shown as `⏎`, other control
/// and invisible characters escaped (`\u{1b}`), so the result stays on one line and shows
/// every change (a carriage return cannot hide what precedes it).
pub fn word_diff(old: &str, new: &str) -> String {
    let runs = runs_of(old, new);
    let last = runs.len().saturating_sub(1);
    let mut out = String::new();
    for (i, (tag, text)) in runs.iter().enumerate() {
        match tag {
            ChangeTag::Equal => out.push_str(&visible(&shorten(text, i == 0, i == last))),
            ChangeTag::Delete => {
                out.push_str("[-");
                out.push_str(&visible(&cut(text)));
                out.push_str("-]");
            }
            ChangeTag::Insert => {
                out.push_str("{+");
                out.push_str(&visible(&cut(text)));
                out.push_str("+}");
            }
        }
    }
    out
}

/// The diff as runs of one tag. Texts with few blanks (Chinese, Japanese, a long identifier)
/// are compared by character, others by word.
fn runs_of(old: &str, new: &str) -> Vec<(ChangeTag, String)> {
    let words = |text: &str| text.split_whitespace().count();
    let (old_words, new_words) = (words(old), words(new));
    if old_words.max(new_words) > MOST_WORDS {
        return [(ChangeTag::Delete, old), (ChangeTag::Insert, new)]
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .map(|(tag, text)| (tag, text.to_string()))
            .collect();
    }
    let mut config = TextDiff::configure();
    config.algorithm(Algorithm::Myers);
    // One long "word" (no blanks) or words of twenty characters on average.
    let by_char = |text: &str, words: usize| {
        let chars = text.chars().count();
        chars > 1 && (words <= 1 || chars > 20 * words)
    };
    let diff = if (by_char(old, old_words) || by_char(new, new_words))
        && old.chars().count().max(new.chars().count()) <= MOST_WORDS
    {
        config.diff_chars(old, new)
    } else {
        config.diff_words(old, new)
    };
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        let text = change.value();
        match runs.last_mut() {
            Some((tag, run)) if *tag == change.tag() => run.push_str(text),
            _ => runs.push((change.tag(), text.to_string())),
        }
    }
    runs
}

/// A removed or inserted stretch, cut past [`MOST_CHARS`] with how much was left out.
fn cut(text: &str) -> String {
    match text.char_indices().nth(MOST_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!(
            "{}… ({} more characters)",
            &text[..at],
            text[at..].chars().count()
        ),
    }
}

/// `text` with its line breaks as `⏎` and its other control and invisible characters
/// escaped.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('⏎'),
            '\t' | ' ' => out.push(c),
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that print as nothing: zero-width spaces and joiners, direction marks, the
/// byte-order mark, separators that are not blanks.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}'
    ) || (c.is_whitespace() && c != ' ')
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
    fn control_and_invisible_characters_are_shown_escaped() {
        let shown = word_diff("plain red", "plain \u{1b}[31mred\r");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\r'),
            "{shown}"
        );
        assert!(shown.contains("\\u{1b}[31mred\\u{d}"), "{shown}");
        assert_eq!(word_diff("pulls", "pu\u{200b}lls"), "pu{+\\u{200b}+}lls");
    }

    #[test]
    fn long_texts_and_texts_without_blanks_stay_readable_and_deterministic() {
        let old: String = (0..5000).map(|i| format!("w{i} ")).collect();
        let new = old.replace("w17 ", "x17 ");
        let shown = word_diff(&old, &new);
        assert!(shown.starts_with("[-w0 w1"), "{}", &shown[..40]);
        assert!(shown.contains("more characters"), "{}", &shown[..40]);
        assert_eq!(shown, word_diff(&old, &new));
        assert_eq!(
            word_diff("日本語の文章です", "日本語の文書です"),
            "日本語の文[-章-]{+書+}です"
        );
    }

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
        assert_eq!(word_diff("a\r\nb", "a\nb"), "a[-\\u{d}⏎-]{+⏎+}b");
        assert_eq!(word_diff("same", "same"), "same");
        assert_eq!(word_diff("", "new text"), "{+new text+}");
    }
}
