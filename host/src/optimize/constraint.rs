//! Constraints between parameters: `analysis.fast < analysis.slow`,
//! `analysis.slow >= 2 * analysis.fast + 5`. A comparison of two arithmetic
//! expressions over numbers and parameter names (`slice.setting`).
//!
//! Names may contain `-` (`regime.trend-window`), so a minus between two
//! names needs spaces around it: `regime.trend-window - analysis.fast`.

use std::fmt;

/// A parsed constraint; names are resolved to indices by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub text: String,
    left: Expr,
    op: Comparison,
    right: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Name(String),
    Negate(Box<Expr>),
    Binary(Box<Expr>, char, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(char),
    Compare(Comparison),
    Open,
    Close,
}

/// Why a constraint could not be parsed: a message and the byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.at + 1)
    }
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens: &tokens, pos: 0, len: text.len() };
        let left = parser.expr()?;
        let op = match parser.next() {
            Some((_, Token::Compare(c))) => c,
            Some((at, _)) => return Err(parser.error(at, "expected a comparison: <, <=, >, >=, == or !=")),
            None => {
                return Err(parser.error(text.len(), "expected a comparison: <, <=, >, >=, == or !="));
            }
        };
        let right = parser.expr()?;
        if let Some((at, _)) = parser.next() {
            return Err(parser.error(at, "unexpected text after the comparison"));
        }
        Ok(Constraint { text: text.trim().to_owned(), left, op, right })
    }

    /// The parameter names it mentions, in order of appearance.
    pub fn names(&self) -> Vec<&str> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Number(_) => {}
                Expr::Name(n) => out.push(n),
                Expr::Negate(e) => walk(e, out),
                Expr::Binary(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.left, &mut out);
        walk(&self.right, &mut out);
        out
    }

    /// Whether the values `value_of` gives for the names meet the constraint.
    pub fn holds(&self, value_of: &dyn Fn(&str) -> f64) -> bool {
        let (a, b) = (eval(&self.left, value_of), eval(&self.right, value_of));
        match self.op {
            Comparison::Less => a < b,
            Comparison::LessOrEqual => a <= b,
            Comparison::Greater => a > b,
            Comparison::GreaterOrEqual => a >= b,
            Comparison::Equal => a == b,
            Comparison::NotEqual => a != b,
        }
    }
}

fn eval(e: &Expr, value_of: &dyn Fn(&str) -> f64) -> f64 {
    match e {
        Expr::Number(n) => *n,
        Expr::Name(n) => value_of(n),
        Expr::Negate(e) => -eval(e, value_of),
        Expr::Binary(a, op, b) => {
            let (a, b) = (eval(a, value_of), eval(b, value_of));
            match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ => a / b,
            }
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let start = i;
        match c {
            ' ' | '\t' => {
                i += 1;
                continue;
            }
            '+' | '-' | '*' | '/' => {
                tokens.push((start, Token::Op(c)));
                i += 1;
            }
            '(' => {
                tokens.push((start, Token::Open));
                i += 1;
            }
            ')' => {
                tokens.push((start, Token::Close));
                i += 1;
            }
            '<' | '>' | '=' | '!' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    ('<', false) => Comparison::Less,
                    ('<', true) => Comparison::LessOrEqual,
                    ('>', false) => Comparison::Greater,
                    ('>', true) => Comparison::GreaterOrEqual,
                    ('=', true) => Comparison::Equal,
                    ('!', true) => Comparison::NotEqual,
                    _ => {
                        return Err(ParseError {
                            at: start,
                            message: format!("`{c}` alone is not a comparison (== and != compare)"),
                        });
                    }
                };
                tokens.push((start, Token::Compare(op)));
                i += if two { 2 } else { 1 };
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b'e') {
                    i += 1;
                }
                let number = &text[start..i];
                let value = number
                    .parse::<f64>()
                    .map_err(|_| ParseError { at: start, message: format!("`{number}` is not a number") })?;
                tokens.push((start, Token::Number(value)));
            }
            c if c.is_ascii_alphabetic() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || b"_-.".contains(&bytes[i])) {
                    i += 1;
                }
                tokens.push((start, Token::Name(text[start..i].to_owned())));
            }
            _ => return Err(ParseError { at: start, message: format!("unexpected `{c}`") }),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [(usize, Token)],
    pos: usize,
    len: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<(usize, Token)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn error(&self, at: usize, message: &str) -> ParseError {
        ParseError { at: at.min(self.len), message: message.to_owned() }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        while let Some(Token::Op(op @ ('+' | '-'))) = self.peek() {
            let op = *op;
            self.pos += 1;
            left = Expr::Binary(Box::new(left), op, Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.factor()?;
        while let Some(Token::Op(op @ ('*' | '/'))) = self.peek() {
            let op = *op;
            self.pos += 1;
            left = Expr::Binary(Box::new(left), op, Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Some((_, Token::Number(n))) => Ok(Expr::Number(n)),
            Some((_, Token::Name(n))) => Ok(Expr::Name(n)),
            Some((_, Token::Op('-'))) => Ok(Expr::Negate(Box::new(self.factor()?))),
            Some((_, Token::Open)) => {
                let e = self.expr()?;
                match self.next() {
                    Some((_, Token::Close)) => Ok(e),
                    Some((at, _)) => Err(self.error(at, "expected `)`")),
                    None => Err(self.error(self.len, "expected `)`")),
                }
            }
            Some((at, _)) => {
                Err(self.error(at, "expected a number, a parameter such as analysis.fast, or `(`"))
            }
            None => Err(self.error(self.len, "expected a number or a parameter at the end")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(text: &str, fast: f64, slow: f64) -> bool {
        let c = Constraint::parse(text).unwrap();
        c.holds(&|name| match name {
            "analysis.fast" => fast,
            "analysis.slow" => slow,
            "regime.trend-window" => 50.0,
            other => panic!("unexpected name {other}"),
        })
    }

    #[test]
    fn comparisons_and_arithmetic() {
        let cases = [
            ("analysis.fast < analysis.slow", 10.0, 30.0, true),
            ("analysis.fast < analysis.slow", 30.0, 30.0, false),
            ("analysis.fast <= analysis.slow", 30.0, 30.0, true),
            ("analysis.slow >= 2 * analysis.fast + 5", 10.0, 25.0, true),
            ("analysis.slow >= 2 * analysis.fast + 5", 10.0, 24.0, false),
            ("analysis.slow - analysis.fast > 10", 10.0, 21.0, true),
            ("(analysis.slow - analysis.fast) / analysis.fast != 2", 10.0, 30.0, false),
            ("-analysis.fast < 0", 10.0, 30.0, true),
            ("regime.trend-window > analysis.slow", 10.0, 30.0, true),
            ("analysis.fast == 1e1", 10.0, 30.0, true),
        ];
        for (text, fast, slow, want) in cases {
            assert_eq!(holds(text, fast, slow), want, "{text} with fast {fast}, slow {slow}");
        }
    }

    #[test]
    fn names_are_listed_in_order() {
        let c = Constraint::parse("analysis.slow >= 2 * analysis.fast").unwrap();
        assert_eq!(c.names(), ["analysis.slow", "analysis.fast"]);
    }

    #[test]
    fn bad_constraints_say_where() {
        let cases = [
            ("analysis.fast", "expected a comparison"),
            ("analysis.fast = 3", "`=` alone is not a comparison"),
            ("analysis.fast < ", "expected a number or a parameter at the end"),
            ("(analysis.fast < 3", "expected `)`"),
            ("analysis.fast < 3 4", "unexpected text after the comparison"),
            ("analysis.fast # 3", "unexpected `#`"),
        ];
        for (text, want) in cases {
            let err = Constraint::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
