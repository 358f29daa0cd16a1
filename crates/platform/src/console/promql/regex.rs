//! A small backtracking matcher for the part of RE2 that label matchers use.
//!
//! Prometheus anchors every matcher regex at both ends (`^(?:re)$`), so the only question
//! asked here is whether the whole value matches; that also makes greedy and lazy
//! quantifiers equivalent. Supported: literals, `.`, classes (`[0-9]`, `[^x]`, `\d`, `\w`,
//! `\s`), escaped punctuation, `*` `+` `?` `{n}` `{n,}` `{n,m}`, groups `(…)` and `(?:…)`,
//! alternation `|`, and `^` `$`. Anything else is refused by name rather than guessed at.

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(super) struct Regex {
    root: Alternation,
}

/// `a|b|c`: one sequence per branch.
#[derive(Debug, Clone)]
struct Alternation(Vec<Vec<Piece>>);

/// An atom with how many times it may repeat.
#[derive(Debug, Clone)]
struct Piece {
    atom: Atom,
    min: u32,
    max: Option<u32>,
}

#[derive(Debug, Clone)]
enum Atom {
    Char(char),
    /// `.`: any character but a newline (RE2 without the `s` flag, as Prometheus 2.x).
    AnyButNewline,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Group(Alternation),
    TextStart,
    TextEnd,
}

/// RE2's limit on counted repetition.
const MAX_REPEAT: u32 = 1000;

impl Regex {
    /// Compiles `pattern`; the error names the unsupported feature or the syntax problem.
    pub(super) fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parser = Parser { chars: &chars, pos: 0 };
        let root = parser.alternation()?;
        match parser.peek() {
            None => Ok(Regex { root }),
            Some(c) => Err(format!("unexpected `{c}` in regex")),
        }
    }

    /// Whether the whole of `text` matches.
    pub(super) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        match_alternation(&self.root, &chars, 0, &mut |end| end == chars.len())
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn alternation(&mut self) -> Result<Alternation, String> {
        let mut branches = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.sequence()?);
        }
        Ok(Alternation(branches))
    }

    fn sequence(&mut self) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let (min, max) = self.quantifier()?;
            if matches!(atom, Atom::TextStart | Atom::TextEnd) && (min, max) != (1, Some(1)) {
                return Err("regex feature `repeated anchor` is not supported".to_string());
            }
            pieces.push(Piece { atom, min, max });
        }
        Ok(pieces)
    }

    fn atom(&mut self) -> Result<Atom, String> {
        let Some(c) = self.next() else { return Err("regex ends unexpectedly".to_string()) };
        Ok(match c {
            '.' => Atom::AnyButNewline,
            '^' => Atom::TextStart,
            '$' => Atom::TextEnd,
            '[' => self.class()?,
            '(' => {
                if self.peek() == Some('?') {
                    if self.chars.get(self.pos + 1) != Some(&':') {
                        return Err("regex feature `(?flags)` is not supported".to_string());
                    }
                    self.pos += 2;
                }
                let inner = self.alternation()?;
                if self.next() != Some(')') {
                    return Err("missing `)` in regex".to_string());
                }
                Atom::Group(inner)
            }
            '*' | '+' | '?' => return Err(format!("missing argument to repetition operator `{c}` in regex")),
            '\\' => self.escape(false)?,
            c => Atom::Char(c),
        })
    }

    /// After a `\`: a named class or an escaped punctuation character.
    fn escape(&mut self, in_class: bool) -> Result<Atom, String> {
        let c = self.next().ok_or("trailing `\\` in regex")?;
        let class = |negated, ranges: &[(char, char)]| Atom::Class { negated, ranges: ranges.to_vec() };
        const DIGIT: [(char, char); 1] = [('0', '9')];
        const WORD: [(char, char); 4] = [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        const SPACE: [(char, char); 4] = [('\t', '\n'), ('\u{c}', '\r'), (' ', ' '), ('\u{b}', '\u{b}')];
        Ok(match c {
            'd' => class(false, &DIGIT),
            'D' if !in_class => class(true, &DIGIT),
            'w' => class(false, &WORD),
            'W' if !in_class => class(true, &WORD),
            's' => class(false, &SPACE),
            'S' if !in_class => class(true, &SPACE),
            'n' => Atom::Char('\n'),
            't' => Atom::Char('\t'),
            c if c.is_ascii_punctuation() => Atom::Char(c),
            c => return Err(format!("regex feature `\\{c}` is not supported")),
        })
    }

    /// After a `[`: the class up to its `]`.
    fn class(&mut self) -> Result<Atom, String> {
        let negated = self.peek() == Some('^');
        self.pos += usize::from(negated);
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.next().ok_or("missing `]` in regex")?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let low = match c {
                '[' if self.peek() == Some(':') => {
                    return Err("regex feature `[:class:]` is not supported".to_string());
                }
                '\\' => match self.escape(true)? {
                    Atom::Char(c) => c,
                    Atom::Class { ranges: named, .. } => {
                        ranges.extend(named);
                        continue;
                    }
                    _ => return Err("bad escape in regex class".to_string()),
                },
                c => c,
            };
            let is_range = self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|c| *c != ']');
            if !is_range {
                ranges.push((low, low));
                continue;
            }
            self.pos += 1;
            let high = match self.next() {
                Some('\\') => match self.escape(true)? {
                    Atom::Char(c) => c,
                    _ => return Err("bad range in regex class".to_string()),
                },
                Some(c) => c,
                None => return Err("missing `]` in regex".to_string()),
            };
            if high < low {
                return Err(format!("bad range `{low}-{high}` in regex class"));
            }
            ranges.push((low, high));
        }
        Ok(Atom::Class { negated, ranges })
    }

    /// The repetition after an atom: `(1, Some(1))` when there is none.
    fn quantifier(&mut self) -> Result<(u32, Option<u32>), String> {
        let single = match self.peek() {
            Some('*') => Some((0, None)),
            Some('+') => Some((1, None)),
            Some('?') => Some((0, Some(1))),
            _ => None,
        };
        let bounds = match (single, self.peek()) {
            (Some(bounds), _) => {
                self.pos += 1;
                bounds
            }
            (None, Some('{')) => match self.counted() {
                Some(bounds) => bounds?,
                // Not a valid repetition: RE2 reads the brace literally.
                None => return Ok((1, Some(1))),
            },
            _ => return Ok((1, Some(1))),
        };
        // A trailing `?` makes the quantifier lazy, which cannot change a full match.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        if let Some(c @ ('*' | '+' | '?')) = self.peek() {
            return Err(format!("bad repetition operator `{c}{c}` in regex"));
        }
        Ok(bounds)
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor, consumed; `None` (nothing consumed) when the
    /// brace does not start a repetition.
    fn counted(&mut self) -> Option<Result<(u32, Option<u32>), String>> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let close = rest.find('}')?;
        let inner = &rest[1..close];
        let (min_text, max_text) = match inner.split_once(',') {
            Some((min, max)) => (min, Some(max)),
            None => (inner, None),
        };
        let number =
            |s: &str| if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) { None } else { s.parse().ok() };
        let min: u32 = number(min_text)?;
        let max = match max_text {
            None => Some(min),
            Some("") => None,
            Some(max) => Some(number(max)?),
        };
        self.pos += rest[..=close].chars().count();
        if min > MAX_REPEAT || max.is_some_and(|max| max > MAX_REPEAT || max < min) {
            return Some(Err(format!("bad repetition `{{{inner}}}` in regex")));
        }
        Some(Ok((min, max)))
    }
}

/// Tries each branch at `pos`; `rest` is called with every end position a branch reaches
/// and says whether the remainder of the pattern matches from there.
fn match_alternation(alt: &Alternation, text: &[char], pos: usize, rest: &mut dyn FnMut(usize) -> bool) -> bool {
    alt.0.iter().any(|branch| match_sequence(branch, text, pos, rest))
}

fn match_sequence(pieces: &[Piece], text: &[char], pos: usize, rest: &mut dyn FnMut(usize) -> bool) -> bool {
    match pieces.split_first() {
        None => rest(pos),
        Some((piece, tail)) => match_piece(piece, 0, text, pos, &mut |end| match_sequence(tail, text, end, rest)),
    }
}

/// Greedy repetition: one more occurrence if allowed, else stop once `min` is reached. An
/// occurrence that consumes nothing counts only while below `min`, so `(a*)*` terminates.
fn match_piece(piece: &Piece, count: u32, text: &[char], pos: usize, rest: &mut dyn FnMut(usize) -> bool) -> bool {
    if piece.max.is_none_or(|max| count < max) {
        let mut again =
            |end: usize| (end != pos || count < piece.min) && match_piece(piece, count + 1, text, end, rest);
        if match_atom(&piece.atom, text, pos, &mut again) {
            return true;
        }
    }
    count >= piece.min && rest(pos)
}

fn match_atom(atom: &Atom, text: &[char], pos: usize, rest: &mut dyn FnMut(usize) -> bool) -> bool {
    let current = text.get(pos).copied();
    match atom {
        Atom::Char(c) => current == Some(*c) && rest(pos + 1),
        Atom::AnyButNewline => current.is_some_and(|c| c != '\n') && rest(pos + 1),
        Atom::Class { negated, ranges } => {
            current.is_some_and(|c| ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) != *negated)
                && rest(pos + 1)
        }
        Atom::Group(alt) => match_alternation(alt, text, pos, rest),
        Atom::TextStart => pos == 0 && rest(pos),
        Atom::TextEnd => pos == text.len() && rest(pos),
    }
}

#[cfg(test)]
mod tests {
    use super::Regex;

    fn matches(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn anchored_at_both_ends() {
        assert!(matches("5..", "503"));
        assert!(!matches("5..", "5030"), "no match of a prefix");
        assert!(!matches("5..", "200"));
        assert!(!matches("0", "503"), "no match of a substring");
    }

    #[test]
    fn classes_groups_alternation() {
        assert!(matches("[45][0-9]{2}", "404"));
        assert!(!matches("[45][0-9]{2}", "4040"));
        assert!(matches("[^2].*", "503"));
        assert!(!matches("[^2].*", "200"));
        assert!(matches("(get|post)_(a|b)+", "post_abba"));
        assert!(!matches("(get|post)_(a|b)+", "post_"));
        assert!(matches("/items/\\{id\\}|/health", "/health"));
        assert!(matches("a\\.b", "a.b") && !matches("a\\.b", "axb"));
        assert!(matches("\\d+ms?", "30m"));
        assert!(matches("(?:a|)*b", "aab"), "empty iterations terminate");
        assert!(matches("x{2,}", "xxx") && !matches("x{2,}", "x"));
        assert!(matches("{id}", "{id}"), "a brace that is no repetition is literal");
        assert!(matches("", ""));
        assert!(matches("^a$", "a"));
    }

    #[test]
    fn unsupported_features_are_named() {
        assert!(Regex::new("(?i)abc").unwrap_err().contains("(?flags)"));
        assert!(Regex::new("\\bword").unwrap_err().contains("\\b"));
        assert!(Regex::new("[[:alpha:]]").unwrap_err().contains("[:class:]"));
        assert!(Regex::new("a**").is_err());
        assert!(Regex::new("(a").is_err());
    }
}
