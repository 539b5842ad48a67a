//! Lexing and s-expressions: a tokenizer (comments, parentheses, atoms, positions counted in
//! characters) and a reader that builds one top-level command at a time with an explicit stack,
//! so that deep nesting fails with an error at [`MAX_DEPTH`](super::MAX_DEPTH) levels instead of
//! overflowing the call stack. Also the numeral syntax, which Rust's float parser is too lax for.

use super::{ParseError, MAX_DEPTH};
use std::fmt;

/// A place in the text, 1-based, columns counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    pub(super) fn err(self, message: impl Into<String>) -> ParseError {
        ParseError { line: Some(self.line), column: Some(self.column), message: message.into() }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}", self.line, self.column)
    }
}

pub(super) fn err_nowhere(message: impl Into<String>) -> ParseError {
    ParseError { line: None, column: None, message: message.into() }
}

enum Token<'a> {
    Open,
    Close,
    Atom(&'a str),
}

pub(super) struct Lexer<'a> {
    text: &'a str,
    at: usize,
    pos: Pos,
}

/// Bytes that end an atom. All are ASCII, so atoms are sliced at character boundaries.
fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'(' | b')' | b';')
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Lexer { text, at: 0, pos: Pos { line: 1, column: 1 } }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn bump(&mut self) {
        let Some(b) = self.peek() else { return };
        self.at += 1;
        if b == b'\n' {
            self.pos = Pos { line: self.pos.line + 1, column: 1 };
        } else if b & 0xC0 != 0x80 {
            // A UTF-8 continuation byte does not start a new character.
            self.pos.column += 1;
        }
    }

    fn next_token(&mut self) -> Option<(Token<'a>, Pos)> {
        loop {
            let b = self.peek()?;
            let pos = self.pos;
            match b {
                b';' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump();
                    }
                }
                b'(' | b')' => {
                    self.bump();
                    return Some((if b == b'(' { Token::Open } else { Token::Close }, pos));
                }
                _ if b.is_ascii_whitespace() => self.bump(),
                _ => {
                    let start = self.at;
                    while self.peek().is_some_and(|c| !is_delimiter(c)) {
                        self.bump();
                    }
                    return Some((Token::Atom(self.text.get(start..self.at).unwrap_or("\u{fffd}")), pos));
                }
            }
        }
    }
}

pub(super) enum Sexp<'a> {
    Atom(&'a str, Pos),
    List(Vec<Sexp<'a>>, Pos),
}

impl Sexp<'_> {
    pub(super) fn pos(&self) -> Pos {
        match self {
            Sexp::Atom(_, pos) | Sexp::List(_, pos) => *pos,
        }
    }

    /// Short description for messages: the atom itself, or the list's head.
    pub(super) fn describe(&self) -> String {
        match self {
            Sexp::Atom(s, _) => format!("'{}'", clip(s)),
            Sexp::List(items, _) => match items.first() {
                Some(Sexp::Atom(head, _)) => format!("'({} ...)'", clip(head)),
                Some(Sexp::List(..)) => "'((...) ...)'".to_string(),
                None => "'()'".to_string(),
            },
        }
    }
}

/// Keeps messages one short line even for a megabyte-long atom.
pub(super) fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

/// Reads the next top-level command `( ... )` with an explicit stack (no recursion), or None
/// at the end of the file.
pub(super) fn read_command<'a>(lexer: &mut Lexer<'a>) -> std::result::Result<Option<(Vec<Sexp<'a>>, Pos)>, ParseError> {
    let open = match lexer.next_token() {
        None => return Ok(None),
        Some((Token::Open, pos)) => pos,
        Some((Token::Close, pos)) => return Err(pos.err("unexpected ')' with no matching '('")),
        Some((Token::Atom(s), pos)) => return Err(pos.err(format!("unexpected '{}' outside a command; expected '('", clip(s)))),
    };
    let mut stack: Vec<(Vec<Sexp<'a>>, Pos)> = vec![(Vec::new(), open)];
    loop {
        let Some((token, pos)) = lexer.next_token() else {
            let unclosed = stack.last().map_or(open, |(_, p)| *p);
            return Err(lexer.pos.err(format!("expected ')' but the file ended (the '(' at {unclosed} is never closed)")));
        };
        match token {
            Token::Open if stack.len() >= MAX_DEPTH => {
                return Err(pos.err(format!("parentheses nested deeper than {MAX_DEPTH} levels")))
            }
            Token::Open => stack.push((Vec::new(), pos)),
            Token::Atom(s) => {
                if let Some((items, _)) = stack.last_mut() {
                    items.push(Sexp::Atom(s, pos));
                }
            }
            Token::Close => {
                let Some((items, start)) = stack.pop() else { return Err(pos.err("unbalanced ')'")) };
                match stack.last_mut() {
                    Some((parent, _)) => parent.push(Sexp::List(items, start)),
                    None => return Ok(Some((items, start))),
                }
            }
        }
    }
}

/// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`, checked by hand because
/// Rust's float parser also accepts `inf`, `NaN` and `infinity`.
pub(super) fn is_numeral(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}
