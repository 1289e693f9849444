//! Invisible characters: finding them and describing them, on the text as written.
//!
//! An attacker hides text two ways: in the Unicode tag block (each tag character stands for an
//! ASCII one, renders as nothing, and models read it), and by splitting a keyword with
//! zero-width characters so that "ig\u{200b}nore previous instructions" slips past a pattern.
//! The `invisible_unicode` rule reports both here; `decode.rs` undoes both (with the other
//! disguises) before the phrase rules run, so hidden text is also judged on what it says.

use std::borrow::Cow;
use std::ops::Range;

use custos_core::finding::is_invisible;

/// How strictly invisible characters are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// Descriptors: any invisible character is suspect; tool docs have no use for them.
    Any,
    /// Results: ordinary text uses some of them (emoji sequences, Persian and Indic scripts,
    /// a byte order mark at the start of a file), so those uses are allowed.
    Ordinary,
}

/// The ASCII character a tag-block character stands for, if it is one of the printable ones.
pub(crate) fn tag_ascii(c: char) -> Option<char> {
    let v = u32::from(c);
    if (0xE0020..=0xE007E).contains(&v) {
        char::from_u32(v - 0xE0000)
    } else {
        None
    }
}

/// Whether the invisible character `c`, between `prev` and `next`, is suspect under `mode`.
fn suspect(mode: Strictness, prev: Option<char>, c: char, next: Option<char>) -> bool {
    if !is_invisible(c) {
        return false;
    }
    if mode == Strictness::Any {
        return true;
    }
    // A neighbour that is itself invisible means a run: runs encode data, so no run is allowed.
    let visible_non_ascii = |n: Option<char>| n.is_some_and(|n| !n.is_ascii() && !is_invisible(n));
    let alphabetic = |n: Option<char>| n.is_some_and(|n| n.is_alphabetic() && !is_invisible(n));
    let allowed = match u32::from(c) {
        // A byte order mark opening a file's contents.
        0xFEFF => prev.is_none(),
        // Zero-width space, non-joiner and joiner inside emoji sequences and scripts that need
        // them (Persian, Indic, Thai line breaking).
        0x200B..=0x200D => visible_non_ascii(prev) && visible_non_ascii(next),
        // Left-to-right and right-to-left marks beside right-to-left text.
        0x200E | 0x200F => visible_non_ascii(prev) || visible_non_ascii(next),
        // A soft hyphen inside a word: hyphenation hints in web text. (Splitting a keyword with
        // one gains nothing: the instruction rules read the text without them.)
        0x00AD => alphabetic(prev) && alphabetic(next),
        _ => false,
    };
    !allowed
}

/// The byte range of the first run of suspect invisible characters in `text`.
pub(crate) fn first_suspect_run(text: &str, mode: Strictness) -> Option<Range<usize>> {
    let mut run: Option<Range<usize>> = None;
    let mut prev = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        if suspect(mode, prev, c, next) {
            let end = at + c.len_utf8();
            run = Some(run.map_or(at..end, |r| r.start..end));
        } else if run.is_some() {
            break;
        }
        prev = Some(c);
    }
    run
}

/// `text` without its suspect invisible characters (what redaction does with them); borrowed
/// when there are none.
pub(crate) fn remove_suspect(text: &str, mode: Strictness) -> Cow<'_, str> {
    if first_suspect_run(text, mode).is_none() {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut prev = None;
    for (i, c) in chars.iter().copied().enumerate() {
        let next = chars.get(i + 1).copied();
        if !suspect(mode, prev, c, next) {
            out.push(c);
        }
        prev = Some(c);
    }
    Cow::Owned(out)
}

/// What a finding shows of an invisible run: the text it spells when it is tag characters,
/// else a little visible context around it (the run itself shown escaped by the finding).
pub(crate) fn run_evidence(text: &str, run: Range<usize>) -> String {
    let hidden = text.get(run.clone()).unwrap_or_default();
    let spelled: String = hidden.chars().filter_map(tag_ascii).collect();
    if !spelled.trim().is_empty() {
        return format!("hidden text: {spelled}");
    }
    let before: String = {
        let head = text.get(..run.start).unwrap_or_default();
        let tail: Vec<char> = head.chars().rev().take(24).collect();
        tail.into_iter().rev().collect()
    };
    let after: String = text.get(run.end..).unwrap_or_default().chars().take(12).collect();
    format!("{before}{hidden}{after}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> String {
        s.chars().filter_map(|c| char::from_u32(u32::from(c) + 0xE0000)).collect()
    }

    #[test]
    fn descriptors_flag_any_invisible_character() {
        assert_eq!(first_suspect_run("a\u{200d}b", Strictness::Any), Some(1..4));
        assert_eq!(first_suspect_run("plain", Strictness::Any), None);
        let t = format!("x{}y", tags("ab"));
        assert_eq!(first_suspect_run(&t, Strictness::Any), Some(1..9));
        assert_eq!(run_evidence(&t, 1..9), "hidden text: ab");
    }

    #[test]
    fn results_allow_the_ordinary_uses() {
        let ordinary = [
            "\u{feff}fn main() {}",           // byte order mark at the start of a file
            "family: 👨\u{200d}👩\u{200d}👧", // emoji sequence
            "می\u{200c}خواهم",                // Persian non-joiner
            "שלום\u{200f} 123",               // right-to-left mark beside Hebrew
            "hyphen\u{ad}ation",              // soft hyphen inside a word
        ];
        for t in ordinary {
            assert_eq!(first_suspect_run(t, Strictness::Ordinary), None, "{t:?}");
            assert!(first_suspect_run(t, Strictness::Any).is_some(), "{t:?}");
        }
        let hostile = [
            "ig\u{200b}nore",       // splits an ASCII keyword
            "x\u{feff}y",           // BOM mid-text
            "a\u{202e}txt.exe",     // bidi override
            "👨\u{200d}\u{200b}👩", // a run, even between emoji
        ];
        for t in hostile {
            assert!(first_suspect_run(t, Strictness::Ordinary).is_some(), "{t:?}");
        }
        assert_eq!(remove_suspect("ig\u{200b}nore 👨\u{200d}👩", Strictness::Ordinary), "ignore 👨\u{200d}👩");
    }

    #[test]
    fn evidence_shows_context_of_a_zero_width_run() {
        let t = "click here\u{200b}\u{200c}now";
        let run = first_suspect_run(t, Strictness::Any).unwrap();
        assert_eq!(run_evidence(t, run), "click here\u{200b}\u{200c}now");
    }
}
