//! Word splitting for inline commands (what telnet and redis-cli send), following
//! redis-server's `sdssplitargs` so that quoting behaves as clients expect.
//!
//! A word is an unquoted run, optionally ending in one quoted section (`foo"bar baz"` is the
//! single word `foobar baz`). Double quotes understand `\n \r \t \b \a \\ \" \xHH` (any other
//! `\c` is `c`); single quotes understand only `\'`. A closing quote must be followed by
//! whitespace or the end of the line.

use std::ops::Range;

use super::parser::ProtocolError;

/// A word of an inline line: unquoted words stay slices of the line (zero-copy); only
/// quoted ones, whose bytes differ from the wire, need their own buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Word {
    Slice(Range<usize>),
    Owned(Vec<u8>),
}

/// Splits `line` (without its line terminator) into at most `max_args` words.
pub(crate) fn split(line: &[u8], max_args: usize) -> Result<Vec<Word>, ProtocolError> {
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i == line.len() {
            return Ok(words);
        }
        if words.len() == max_args {
            return Err(ProtocolError::TooManyArguments);
        }
        let (word, next) = split_word(line, i)?;
        words.push(word);
        i = next;
    }
}

/// C's `isspace`: what separates words.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Reads the word starting at `start`; returns it and the offset just after it.
fn split_word(line: &[u8], start: usize) -> Result<(Word, usize), ProtocolError> {
    // sdssplitargs ends an unquoted word only at these four, not at \v or \f.
    let end = line[start..]
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\''))
        .map_or(line.len(), |n| start + n);
    match line.get(end) {
        Some(&quote @ (b'"' | b'\'')) => {
            let mut out = line[start..end].to_vec();
            let next = read_quoted(line, end + 1, quote, &mut out)?;
            Ok((Word::Owned(out), next))
        }
        _ => Ok((Word::Slice(start..end), end)),
    }
}

/// Appends the quoted section starting at `p` (just after the opening quote) to `out`;
/// returns the offset just after the closing quote.
fn read_quoted(
    line: &[u8],
    mut p: usize,
    quote: u8,
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    loop {
        let Some(&b) = line.get(p) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        let next = line.get(p + 1).copied();
        if b == quote {
            if next.is_some_and(|n| !is_space(n)) {
                return Err(ProtocolError::UnbalancedQuotes);
            }
            return Ok(p + 1);
        }
        match (b, next) {
            (b'\\', Some(b'x')) if quote == b'"' => {
                let hex = (
                    line.get(p + 2).and_then(|&h| hex_value(h)),
                    line.get(p + 3).and_then(|&h| hex_value(h)),
                );
                if let (Some(hi), Some(lo)) = hex {
                    out.push((hi << 4) | lo);
                    p += 4;
                } else {
                    out.push(b'x');
                    p += 2;
                }
            }
            (b'\\', Some(c)) if quote == b'"' => {
                out.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                p += 2;
            }
            (b'\\', Some(b'\'')) if quote == b'\'' => {
                out.push(b'\'');
                p += 2;
            }
            _ => {
                out.push(b);
                p += 1;
            }
        }
    }
}

fn hex_value(h: u8) -> Option<u8> {
    (h as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits and resolves the words to their bytes.
    fn words(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        Ok(split(line, 100)?
            .into_iter()
            .map(|w| match w {
                Word::Slice(r) => line[r].to_vec(),
                Word::Owned(v) => v,
            })
            .collect())
    }

    fn ok(line: &[u8], expect: &[&[u8]]) {
        let expect: Vec<Vec<u8>> = expect.iter().map(|w| w.to_vec()).collect();
        assert_eq!(
            words(line),
            Ok(expect),
            "{:?}",
            line.escape_ascii().to_string()
        );
    }

    fn unbalanced(line: &[u8]) {
        assert_eq!(
            words(line),
            Err(ProtocolError::UnbalancedQuotes),
            "{:?}",
            line.escape_ascii().to_string()
        );
    }

    #[test]
    fn splitting_like_sdssplitargs() {
        ok(b"", &[]);
        ok(b" \t\x0b\x0c ", &[]);
        ok(b"set k v", &[b"set", b"k", b"v"]);
        ok(b"  a\t\tb\rc  ", &[b"a", b"b", b"c"]);
        // \v does not end an unquoted word, it only separates words.
        ok(b"a\x0bb", &[b"a\x0bb"]);
        ok(b"\"a b\" 'c d'", &[b"a b", b"c d"]);
        ok(b"\"\"", &[b""]);
        ok(b"''", &[b""]);
        ok(b"foo\"bar baz\"", &[b"foobar baz"]);
        ok(
            b"\"\\x41\\x7a\\n\\r\\t\\b\\a\\\\\\\"\\q\"",
            &[b"Az\n\r\t\x08\x07\\\"q"],
        );
        ok(b"\"\\xZZ\" \"\\x4\"", &[b"xZZ", b"x4"]);
        ok(b"\"\\xff\"", &[b"\xff"]);
        ok(b"'it\\'s' 'a\\nb'", &[b"it's", b"a\\nb"]);
        ok(b"'\"' \"'\"", &[b"\"", b"'"]);
        ok(b"\"a\"\tb", &[b"a", b"b"]);
        ok(b"x \xff\x00y", &[b"x", b"\xff\x00y"]);
        unbalanced(b"\"abc");
        unbalanced(b"'abc");
        unbalanced(b"\"abc\\\"");
        unbalanced(b"\"a\"b");
        unbalanced(b"'a'b");
        unbalanced(b"foo\"bar\"baz");
        unbalanced(b"\"\\");
    }

    #[test]
    fn unquoted_words_are_slices() {
        let line = b"get \"k\" v";
        let w = split(line, 10).unwrap();
        assert_eq!(
            w,
            vec![
                Word::Slice(0..3),
                Word::Owned(b"k".to_vec()),
                Word::Slice(8..9)
            ]
        );
    }

    #[test]
    fn too_many_words() {
        assert_eq!(split(b"a b c", 3).map(|w| w.len()), Ok(3));
        assert_eq!(split(b"a b c d", 3), Err(ProtocolError::TooManyArguments));
        assert_eq!(split(b"a b c   ", 3).map(|w| w.len()), Ok(3));
    }
}
