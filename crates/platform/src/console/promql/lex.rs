//! The PromQL lexer: text → tokens with their byte offsets, and Prometheus durations.

/// One lexical token. Keywords (`by`, `and`, `offset`, …) stay identifiers: which words
/// are keywords depends on where they stand, and the parser knows that.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Number(f64),
    Duration(i64),
    Str(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    At,
    /// `=` in a label matcher.
    Assign,
    /// `!=`, both a matcher and a comparison.
    NotEqual,
    RegexMatch,
    RegexNoMatch,
    EqualEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    /// Byte offset of the token's first character in the query text.
    pub pos: usize,
}

/// A lexing failure: byte offset and message (the parser turns it into a `ParseError`).
pub(super) type LexError = (usize, String);

/// Splits `text` into tokens, ending with `Tok::Eof`. `#` starts a comment to the end of
/// the line, as in Prometheus.
pub(super) fn lex(text: &str) -> Result<Vec<Token>, LexError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let simple = match c {
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            b'@' => Some(Tok::At),
            b'+' => Some(Tok::Plus),
            b'-' => Some(Tok::Minus),
            b'*' => Some(Tok::Star),
            b'/' => Some(Tok::Slash),
            b'%' => Some(Tok::Percent),
            b'^' => Some(Tok::Caret),
            _ => None,
        };
        if let Some(tok) = simple {
            tokens.push(Token { tok, pos: start });
            i += 1;
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            (b' ' | b'\t' | b'\n' | b'\r', _) => {
                i += 1;
                continue;
            }
            (b'#', _) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            (b'=', Some(b'=')) => (Tok::EqualEqual, 2),
            (b'=', Some(b'~')) => (Tok::RegexMatch, 2),
            (b'=', _) => (Tok::Assign, 1),
            (b'!', Some(b'=')) => (Tok::NotEqual, 2),
            (b'!', Some(b'~')) => (Tok::RegexNoMatch, 2),
            (b'>', Some(b'=')) => (Tok::GreaterEqual, 2),
            (b'>', _) => (Tok::Greater, 1),
            (b'<', Some(b'=')) => (Tok::LessEqual, 2),
            (b'<', _) => (Tok::Less, 1),
            (b'"' | b'\'' | b'`', _) => {
                let (value, len) = lex_string(&text[i..]).map_err(|message| (start, message))?;
                (Tok::Str(value), len)
            }
            (b'0'..=b'9', _) | (b'.', Some(b'0'..=b'9')) => {
                lex_number(&text[i..]).map_err(|message| (start, message))?
            }
            (b'a'..=b'z' | b'A'..=b'Z' | b'_', _) => {
                let len = text[i..]
                    .bytes()
                    .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
                    .unwrap_or(text.len() - i);
                let word = &text[i..i + len];
                // Prometheus reads `Inf` and `NaN` (any case) as number literals.
                let tok = match word.to_ascii_lowercase().as_str() {
                    "inf" => Tok::Number(f64::INFINITY),
                    "nan" => Tok::Number(f64::NAN),
                    _ => Tok::Ident(word.to_string()),
                };
                (tok, len)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err((start, format!("unexpected character `{ch}`")));
            }
        };
        tokens.push(Token { tok, pos: start });
        i += len;
    }
    tokens.push(Token { tok: Tok::Eof, pos: text.len() });
    Ok(tokens)
}

/// Lexes a number (`1`, `0.95`, `1e3`, `.5`, `0x1f`) or, when an integer is followed by a
/// unit, a duration (`5m`, `1m30s`). Returns the token and its length in bytes.
fn lex_number(text: &str) -> Result<(Tok, usize), String> {
    let bytes = text.as_bytes();
    let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let int_len = digits(0);
    let is_word_char = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if text.starts_with("0x") || text.starts_with("0X") {
        let hex_len = bytes[2..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if hex_len == 0 || is_word_char(2 + hex_len) {
            return Err(format!("bad number `{}`", word_at(text)));
        }
        let value = i64::from_str_radix(&text[2..2 + hex_len], 16).map_err(|e| format!("bad number: {e}"))?;
        return Ok((Tok::Number(value as f64), 2 + hex_len));
    }
    if int_len > 0 && bytes.get(int_len).is_some_and(|b| b"ywdhms".contains(b)) {
        let len = bytes.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        let ms = parse_duration(&text[..len])?;
        return Ok((Tok::Duration(ms), len));
    }
    let mut len = int_len;
    if bytes.get(len) == Some(&b'.') {
        len += 1 + digits(len + 1);
    }
    if matches!(bytes.get(len), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(len + 1), Some(b'+' | b'-')));
        let exp_len = digits(len + 1 + sign);
        if exp_len > 0 {
            len += 1 + sign + exp_len;
        }
    }
    if is_word_char(len) {
        return Err(format!("bad number or duration `{}`", word_at(text)));
    }
    let value = text[..len].parse::<f64>().map_err(|e| format!("bad number `{}`: {e}", &text[..len]))?;
    Ok((Tok::Number(value), len))
}

/// The run of characters that make one bad literal, for error messages.
fn word_at(text: &str) -> &str {
    let len = text.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'_').count();
    &text[..len.max(1)]
}

/// Lexes a quoted string starting at `text[0]` (`"…"`, `'…'` with Go escapes, or a raw
/// `` `…` ``). Returns the unescaped value and the length of the literal in bytes.
fn lex_string(text: &str) -> Result<(String, usize), String> {
    let mut chars = text.char_indices();
    let quote = chars.next().map(|(_, c)| c).ok_or("empty string literal")?;
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, i + c.len_utf8())),
            '\n' if quote != '`' => break,
            '\\' if quote != '`' => {
                let (_, e) = chars.next().ok_or("unterminated string")?;
                let simple = match e {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    '\\' | '"' | '\'' => Some(e),
                    _ => None,
                };
                if let Some(s) = simple {
                    value.push(s);
                    continue;
                }
                let digits = match e {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => return Err(format!("unknown escape sequence `\\{e}` in string")),
                };
                let hex: String = (0..digits).filter_map(|_| chars.next().map(|(_, h)| h)).collect();
                let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad escape `\\{e}{hex}` in string"))?;
                value.push(char::from_u32(code).ok_or(format!("bad escape `\\{e}{hex}` in string"))?);
            }
            c => value.push(c),
        }
    }
    Err("unterminated string".to_string())
}

/// Parses a Prometheus duration (`1h`, `1m30s`, `500ms`, `0`): integer amounts of units in
/// descending order y, w, d, h, m, s, ms, each at most once. Returns milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bad = || format!("bad duration `{text}`: expected e.g. 30s, 5m, 1h30m, 500ms");
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let amount: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let index = UNITS[next_unit..].iter().position(|(name, _)| *name == unit).ok_or_else(bad)? + next_unit;
        next_unit = index + 1;
        let add = amount.checked_mul(UNITS[index].1).ok_or_else(bad)?;
        total = total.checked_add(add).ok_or_else(bad)?;
    }
    if text.is_empty() { Err(bad()) } else { Ok(total) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("6m40s"), Ok(400_000));
        assert!(parse_duration("30s1m").is_err(), "units out of order");
        assert!(parse_duration("1.5m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn numbers_and_durations() {
        let toks: Vec<Tok> = lex("0.95 1e3 5m .5 0x10").unwrap().into_iter().map(|t| t.tok).collect();
        assert_eq!(
            toks,
            [
                Tok::Number(0.95),
                Tok::Number(1000.0),
                Tok::Duration(300_000),
                Tok::Number(0.5),
                Tok::Number(16.0),
                Tok::Eof
            ]
        );
        assert!(lex("5x").is_err());
    }

    #[test]
    fn strings() {
        let toks: Vec<Tok> = lex(r#""a\"b\\." 'c' `\d`"#).unwrap().into_iter().map(|t| t.tok).collect();
        assert_eq!(toks[..3], [Tok::Str("a\"b\\.".into()), Tok::Str("c".into()), Tok::Str("\\d".into())]);
        assert!(lex("\"open").is_err());
    }
}
