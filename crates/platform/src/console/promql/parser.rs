//! The recursive-descent parser: tokens → type-checked `Expr`.

use super::lex::{self, Tok, Token};
use super::{AggregateOp, BinaryOp, Expr, Function, Grouping, MatchOp, Matcher, ParseError, Type, VectorMatching};

/// Parses a query whose result is a scalar or an instant vector.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = lex::lex(text).map_err(|(pos, message)| error_at(text, pos, message))?;
    let mut parser = Parser { text, tokens, index: 0 };
    let expr = parser.expr(0)?;
    if parser.peek() != &Tok::Eof {
        return Err(parser.unexpected("after the end of the expression"));
    }
    if expr.value_type() == Type::Matrix {
        return Err(error_at(
            text,
            0,
            "a range vector cannot be a query's result; use it in a function, e.g. rate(x[5m])",
        ));
    }
    Ok(expr)
}

fn error_at(text: &str, pos: usize, message: impl Into<String>) -> ParseError {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ParseError { position: Some((line, column)), message: message.into() }
}

fn unsupported(feature: &str) -> String {
    format!("{feature} is not supported by the console's evaluator")
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    index: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.index + ahead).min(last)].tok
    }

    fn advance(&mut self) -> Tok {
        let tok = self.peek().clone();
        self.index = (self.index + 1).min(self.tokens.len() - 1);
        tok
    }

    fn pos(&self) -> usize {
        self.tokens[self.index].pos
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        error_at(self.text, self.pos(), message)
    }

    fn unexpected(&self, context: &str) -> ParseError {
        let what = match self.peek() {
            Tok::Eof => "end of input".to_string(),
            Tok::Ident(word) => format!("`{word}`"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Duration(_) => "duration".to_string(),
            Tok::Str(s) => format!("string {s:?}"),
            _ => {
                let rest = &self.text[self.pos()..];
                format!("`{}`", rest.chars().take_while(|c| !c.is_whitespace()).take(2).collect::<String>())
            }
        };
        self.error(format!("unexpected {what} {context}"))
    }

    fn expect(&mut self, tok: Tok, context: &str) -> Result<(), ParseError> {
        if *self.peek() == tok {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(context))
        }
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Tok::Ident(word) if word.eq_ignore_ascii_case(keyword))
    }

    /// Precedence climbing: operators binding at least as tightly as `min_precedence`.
    fn expr(&mut self, min_precedence: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = BinaryOp::from_token(self.peek()) {
            if op.precedence() < min_precedence {
                break;
            }
            let op_pos = self.pos();
            self.advance();
            let return_bool = self.peek_keyword("bool");
            if return_bool {
                self.advance();
            }
            let matching = self.vector_matching()?;
            // `^` is right-associative, the others left-associative.
            let next = if op == BinaryOp::Pow { op.precedence() } else { op.precedence() + 1 };
            let rhs = self.expr(next)?;
            lhs = self.binary(op_pos, op, lhs, rhs, return_bool, matching)?;
        }
        Ok(lhs)
    }

    /// `on (…)` / `ignoring (…)` after a binary operator; `group_left/right` are refused.
    fn vector_matching(&mut self) -> Result<Option<VectorMatching>, ParseError> {
        let matching = if self.peek_keyword("on") {
            self.advance();
            Some(VectorMatching::On(self.label_list()?))
        } else if self.peek_keyword("ignoring") {
            self.advance();
            Some(VectorMatching::Ignoring(self.label_list()?))
        } else {
            None
        };
        if let Tok::Ident(word) = self.peek() {
            let word = word.to_ascii_lowercase();
            if word == "group_left" || word == "group_right" {
                return Err(self.error(unsupported(&format!("`{word}` (many-to-one matching)"))));
            }
        }
        Ok(matching)
    }

    fn binary(
        &self,
        pos: usize,
        op: BinaryOp,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        matching: Option<VectorMatching>,
    ) -> Result<Expr, ParseError> {
        let fail = |message: &str| Err(error_at(self.text, pos, message));
        let (left, right) = (lhs.value_type(), rhs.value_type());
        if left == Type::Matrix || right == Type::Matrix {
            return fail("binary expressions take only scalars and instant vectors, not range vectors");
        }
        if return_bool && !op.is_comparison() {
            return fail("the `bool` modifier can only be used on comparison operators");
        }
        if op.is_set() && (left != Type::Vector || right != Type::Vector) {
            return fail("set operators (`and`, `or`, `unless`) take two instant vectors");
        }
        if op.is_comparison() && !return_bool && left == Type::Scalar && right == Type::Scalar {
            return fail("comparisons between scalars must use the `bool` modifier");
        }
        if matching.is_some() && (left != Type::Vector || right != Type::Vector) {
            return fail("vector matching (`on`, `ignoring`) is only allowed between instant vectors");
        }
        let matching = matching.unwrap_or(VectorMatching::Ignoring(Vec::new()));
        Ok(Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), return_bool, matching })
    }

    /// Unary `-`/`+` bind more loosely than `^` and more tightly than `*`, as in PromQL.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Minus | Tok::Plus => {
                let negate = self.advance() == Tok::Minus;
                let pos = self.pos();
                let operand = self.expr(BinaryOp::Pow.precedence())?;
                match (negate, operand) {
                    (false, operand) => Ok(operand),
                    (true, Expr::Number(n)) => Ok(Expr::Number(-n)),
                    (true, operand) if operand.value_type() == Type::Matrix => {
                        Err(error_at(self.text, pos, "unary minus takes a scalar or an instant vector"))
                    }
                    (true, operand) => Ok(Expr::Negate(Box::new(operand))),
                }
            }
            _ => {
                // `(x)[5m]` is no range: only a bare selector takes one.
                let bare = *self.peek() != Tok::LParen;
                let primary = self.primary()?;
                self.postfix(primary, bare)
            }
        }
    }

    /// Ranges after a selector, and the refused `offset`, `@` and subqueries.
    fn postfix(&mut self, expr: Expr, bare: bool) -> Result<Expr, ParseError> {
        if self.peek_keyword("offset") {
            return Err(self.error(unsupported("`offset`")));
        }
        match self.peek() {
            Tok::At => Err(self.error(unsupported("`@`"))),
            Tok::LBracket => {
                self.advance();
                let Tok::Duration(range_ms) = self.advance() else {
                    return Err(self.error("expected a duration such as 5m in `[…]`"));
                };
                if *self.peek() == Tok::Colon {
                    return Err(self.error(unsupported("a subquery `[range:step]`")));
                }
                self.expect(Tok::RBracket, "in a range, expected `]`")?;
                let (Expr::Vector(matchers), true) = (expr, bare) else {
                    return Err(self.error("a range `[…]` can only follow a vector selector"));
                };
                if range_ms <= 0 {
                    return Err(self.error("a range must be longer than zero"));
                }
                let range = Expr::Range { matchers, range_ms };
                if self.peek_keyword("offset") || *self.peek() == Tok::At {
                    return self.postfix(range, false);
                }
                Ok(range)
            }
            _ => Ok(expr),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Tok::Number(n) => {
                self.advance();
                Ok(Expr::Number(n))
            }
            Tok::Str(_) => Err(self.error(unsupported("a string literal"))),
            Tok::LParen => {
                self.advance();
                let inner = self.expr(0)?;
                self.expect(Tok::RParen, "in parentheses, expected `)`")?;
                Ok(inner)
            }
            Tok::LBrace => self.selector(None),
            Tok::Ident(word) => self.identifier(&word),
            _ => Err(self.unexpected("where an expression was expected")),
        }
    }

    /// An identifier in expression position: aggregation, function call or metric name.
    fn identifier(&mut self, word: &str) -> Result<Expr, ParseError> {
        const KEYWORDS: [&str; 11] =
            ["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"];
        const UNSUPPORTED_AGGREGATIONS: [&str; 9] =
            ["topk", "bottomk", "quantile", "stddev", "stdvar", "count_values", "group", "limitk", "limit_ratio"];
        let lower = word.to_ascii_lowercase();
        let opens = matches!(self.peek_at(1), Tok::LParen)
            || matches!(self.peek_at(1), Tok::Ident(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without"));
        let aggregate = match lower.as_str() {
            "sum" => Some(AggregateOp::Sum),
            "min" => Some(AggregateOp::Min),
            "max" => Some(AggregateOp::Max),
            "avg" => Some(AggregateOp::Avg),
            "count" => Some(AggregateOp::Count),
            _ => None,
        };
        if opens && UNSUPPORTED_AGGREGATIONS.contains(&lower.as_str()) {
            return Err(self.error(unsupported(&format!("the aggregation `{lower}`"))));
        }
        if let (true, Some(op)) = (opens, aggregate) {
            self.advance();
            return self.aggregation(op);
        }
        if KEYWORDS.contains(&lower.as_str()) {
            return Err(self.unexpected("where an expression was expected"));
        }
        if matches!(self.peek_at(1), Tok::LParen) {
            let Some(func) = Function::from_name(word) else {
                return Err(self.error(unsupported(&format!("the function `{word}`"))));
            };
            self.advance();
            return self.call(func, word);
        }
        self.advance();
        self.selector(Some(word.to_string()))
    }

    fn call(&mut self, func: Function, name: &str) -> Result<Expr, ParseError> {
        let start = self.pos();
        self.expect(Tok::LParen, "after a function name")?;
        let mut args = Vec::new();
        while *self.peek() != Tok::RParen {
            args.push(self.expr(0)?);
            if *self.peek() != Tok::Comma {
                break;
            }
            self.advance();
        }
        self.expect(Tok::RParen, "in a function call, expected `)`")?;
        let expected = func.arg_types();
        if args.len() != expected.len() {
            let message = format!("`{name}` takes {} argument(s), got {}", expected.len(), args.len());
            return Err(error_at(self.text, start, message));
        }
        for (i, (arg, want)) in args.iter().zip(expected).enumerate() {
            if arg.value_type() != *want {
                let (want, got) = (want.name(), arg.value_type().name());
                let message = format!("argument {} of `{name}` must be a {want}, got a {got}", i + 1);
                return Err(error_at(self.text, start, message));
            }
        }
        Ok(Expr::Call { func, args })
    }

    /// After the operator's name: grouping before or after the parenthesised argument.
    fn aggregation(&mut self, op: AggregateOp) -> Result<Expr, ParseError> {
        let mut grouping = self.grouping()?;
        let start = self.pos();
        self.expect(Tok::LParen, "after an aggregation, expected `(`")?;
        let expr = self.expr(0)?;
        if *self.peek() == Tok::Comma {
            return Err(self.error("this aggregation takes one argument"));
        }
        self.expect(Tok::RParen, "in an aggregation, expected `)`")?;
        if let Some(after) = self.grouping()? {
            if grouping.is_some() {
                return Err(self.error("an aggregation takes `by` or `without` only once"));
            }
            grouping = Some(after);
        }
        if expr.value_type() != Type::Vector {
            let message = format!("an aggregation takes an instant vector, got a {}", expr.value_type().name());
            return Err(error_at(self.text, start, message));
        }
        let grouping = grouping.unwrap_or(Grouping::By(Vec::new()));
        Ok(Expr::Aggregate { op, grouping, expr: Box::new(expr) })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.peek_keyword("by") {
            self.advance();
            Ok(Some(Grouping::By(self.label_list()?)))
        } else if self.peek_keyword("without") {
            self.advance();
            Ok(Some(Grouping::Without(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    /// `(a, b, …)`, a trailing comma allowed.
    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "expected `(` and a list of label names")?;
        let mut labels = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::RParen => break,
                Tok::Ident(name) if !name.contains(':') => labels.push(name),
                _ => return Err(self.unexpected("in a list of label names")),
            }
            self.advance();
            match self.peek() {
                Tok::Comma => self.advance(),
                Tok::RParen => break,
                _ => return Err(self.unexpected("in a list of label names, expected `,` or `)`")),
            };
        }
        self.advance();
        Ok(labels)
    }

    /// `name`, `name{…}` or `{…}`; the name becomes an `__name__` matcher.
    fn selector(&mut self, name: Option<String>) -> Result<Expr, ParseError> {
        let start = self.pos();
        let mut matchers = Vec::new();
        if let Some(name) = &name {
            matchers.push(Matcher::new("__name__", MatchOp::Equal, name)?);
        }
        if *self.peek() == Tok::LBrace {
            self.advance();
            matchers.extend(self.label_matchers()?);
        }
        let names = matchers.iter().filter(|m| m.name == "__name__").count();
        if name.is_some() && names > 1 {
            return Err(error_at(self.text, start, "the metric name is set twice"));
        }
        if matchers.iter().all(|m| m.matches("")) {
            return Err(error_at(self.text, start, "a vector selector needs at least one matcher that rejects \"\""));
        }
        Ok(Expr::Vector(matchers))
    }

    /// After `{`: matchers up to the `}`, a trailing comma allowed.
    fn label_matchers(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let mut matchers = Vec::new();
        while *self.peek() != Tok::RBrace {
            let Tok::Ident(name) = self.peek().clone() else {
                return Err(self.unexpected("in a label matcher, expected a label name"));
            };
            if name.contains(':') {
                return Err(self.error(format!("`{name}` is not a valid label name")));
            }
            self.advance();
            let op = match self.peek() {
                Tok::Assign => MatchOp::Equal,
                Tok::NotEqual => MatchOp::NotEqual,
                Tok::RegexMatch => MatchOp::Regex,
                Tok::RegexNoMatch => MatchOp::NotRegex,
                _ => return Err(self.unexpected("in a label matcher, expected `=`, `!=`, `=~` or `!~`")),
            };
            self.advance();
            let value_pos = self.pos();
            let Tok::Str(value) = self.peek().clone() else {
                return Err(self.unexpected("in a label matcher, expected a quoted value"));
            };
            self.advance();
            let matcher = Matcher::new(&name, op, &value).map_err(|e| error_at(self.text, value_pos, e.message))?;
            matchers.push(matcher);
            if *self.peek() == Tok::Comma {
                self.advance();
            } else if *self.peek() != Tok::RBrace {
                return Err(self.unexpected("in label matchers, expected `,` or `}`"));
            }
        }
        self.advance();
        Ok(matchers)
    }
}
