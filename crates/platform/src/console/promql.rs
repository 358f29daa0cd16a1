//! The PromQL subset the console evaluates: its AST, label matchers and errors here; the
//! lexer (`lex`), parser (`parser`) and RE2 subset (`regex`) beside it. The parser builds a
//! type-checked `Expr` and refuses, by name, every feature the evaluator does not
//! implement rather than evaluating it wrongly.

mod lex;
mod parser;
mod regex;

use std::fmt;

use lex::Tok;
pub use lex::parse_duration;
pub use parser::parse;

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher: `name op "value"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Compiled once, for `Regex` and `NotRegex`.
    regex: Option<regex::Regex>,
}

impl Matcher {
    /// Builds a matcher; fails on a regex outside the supported subset.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, ParseError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(regex::Regex::new(value).map_err(|message| ParseError {
                position: None,
                message: format!("in the regex of label `{name}`: {message}"),
            })?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher { name: name.to_string(), op, value: value.to_string(), regex })
    }

    /// Whether a label value matches; an absent label is to be tested as `""`.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            // `new` compiles a regex for both regex operators.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// A query that is malformed, ill-typed, or uses a feature the evaluator lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line and column (in characters), when the error has a place in a query.
    position: Option<(usize, usize)>,
    message: String,
}

impl ParseError {
    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "parse error at {line}:{column}: {}", self.message),
            None => write!(f, "parse error: {}", self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Functions the evaluator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Rate,
    Increase,
    MinOverTime,
    MaxOverTime,
    AvgOverTime,
    HistogramQuantile,
}

impl Function {
    fn from_name(name: &str) -> Option<Function> {
        Some(match name {
            "rate" => Function::Rate,
            "increase" => Function::Increase,
            "min_over_time" => Function::MinOverTime,
            "max_over_time" => Function::MaxOverTime,
            "avg_over_time" => Function::AvgOverTime,
            "histogram_quantile" => Function::HistogramQuantile,
            _ => return None,
        })
    }

    fn arg_types(self) -> &'static [Type] {
        match self {
            Function::HistogramQuantile => &[Type::Scalar, Type::Vector],
            _ => &[Type::Matrix],
        }
    }
}

/// Aggregation operators the evaluator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateOp {
    Sum,
    Min,
    Max,
    Avg,
    Count,
}

/// Which labels an aggregation keeps: `by (…)` exactly these, `without (…)` all others
/// (and never `__name__`). A plain `sum(x)` is `By(vec![])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

/// Binary operators, by PromQL precedence from `or` (lowest) to `^`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt | BinaryOp::Ge | BinaryOp::Le)
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }

    fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 5,
            BinaryOp::Pow => 6,
            _ => 3,
        }
    }

    fn from_token(tok: &Tok) -> Option<BinaryOp> {
        Some(match tok {
            Tok::Plus => BinaryOp::Add,
            Tok::Minus => BinaryOp::Sub,
            Tok::Star => BinaryOp::Mul,
            Tok::Slash => BinaryOp::Div,
            Tok::Percent => BinaryOp::Mod,
            Tok::Caret => BinaryOp::Pow,
            Tok::EqualEqual => BinaryOp::Eq,
            Tok::NotEqual => BinaryOp::Ne,
            Tok::Greater => BinaryOp::Gt,
            Tok::Less => BinaryOp::Lt,
            Tok::GreaterEqual => BinaryOp::Ge,
            Tok::LessEqual => BinaryOp::Le,
            Tok::Ident(word) => match word.to_ascii_lowercase().as_str() {
                "and" => BinaryOp::And,
                "or" => BinaryOp::Or,
                "unless" => BinaryOp::Unless,
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// Which labels two vectors' samples are matched on: `on (…)` exactly these,
/// `ignoring (…)` all but these and `__name__` (the default is `Ignoring(vec![])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorMatching {
    On(Vec<String>),
    Ignoring(Vec<String>),
}

/// A parsed, type-checked query.
#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64),
    /// Instant vector selector; the metric name is an `__name__` `Equal` matcher.
    Vector(Vec<Matcher>),
    /// Range vector selector `x[5m]`: only ever a function's argument.
    Range {
        matchers: Vec<Matcher>,
        range_ms: i64,
    },
    Call {
        func: Function,
        args: Vec<Expr>,
    },
    Aggregate {
        op: AggregateOp,
        grouping: Grouping,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        return_bool: bool,
        matching: VectorMatching,
    },
    /// Unary minus of a vector (a negated number is folded into `Number`).
    Negate(Box<Expr>),
}

/// The static type of an expression, checked as Prometheus's parser does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Scalar,
    Vector,
    Matrix,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
        }
    }
}

impl Expr {
    /// Every vector selector's matchers, in query order.
    pub fn selectors(&self) -> Vec<&[Matcher]> {
        let mut out = Vec::new();
        self.collect_selectors(&mut out);
        out
    }

    fn collect_selectors<'a>(&'a self, out: &mut Vec<&'a [Matcher]>) {
        match self {
            Expr::Number(_) => {}
            Expr::Vector(matchers) | Expr::Range { matchers, .. } => out.push(matchers),
            Expr::Call { args, .. } => args.iter().for_each(|arg| arg.collect_selectors(out)),
            Expr::Aggregate { expr, .. } | Expr::Negate(expr) => expr.collect_selectors(out),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.collect_selectors(out);
                rhs.collect_selectors(out);
            }
        }
    }

    fn value_type(&self) -> Type {
        match self {
            Expr::Number(_) => Type::Scalar,
            Expr::Range { .. } => Type::Matrix,
            Expr::Binary { lhs, rhs, .. } if lhs.value_type() == Type::Scalar && rhs.value_type() == Type::Scalar => {
                Type::Scalar
            }
            _ => Type::Vector,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_modifiers() {
        let expr = parse("a + b * c > bool 2 and on() d").unwrap();
        let Expr::Binary { op: BinaryOp::And, lhs, matching: VectorMatching::On(on), .. } = expr else {
            panic!("`and` binds loosest: {expr:?}")
        };
        assert!(on.is_empty());
        let Expr::Binary { op: BinaryOp::Gt, lhs: sum, return_bool: true, .. } = *lhs else { panic!("{lhs:?}") };
        let Expr::Binary { op: BinaryOp::Add, rhs: product, .. } = *sum else { panic!("{sum:?}") };
        assert!(matches!(*product, Expr::Binary { op: BinaryOp::Mul, .. }));
        assert!(
            matches!(parse("2 ^ 3 ^ 2").unwrap(), Expr::Binary { op: BinaryOp::Pow, rhs, .. } if matches!(*rhs, Expr::Binary { .. }))
        );
        assert!(matches!(parse("-1").unwrap(), Expr::Number(n) if n == -1.0));
    }

    #[test]
    fn aggregation_grouping_either_side() {
        for text in ["sum by (le) (rate(x[5m]))", "sum(rate(x[5m])) by (le)"] {
            let Expr::Aggregate { op: AggregateOp::Sum, grouping, expr } = parse(text).unwrap() else { panic!() };
            assert_eq!(grouping, Grouping::By(vec!["le".into()]));
            let Expr::Call { func: Function::Rate, args } = *expr else { panic!() };
            assert!(matches!(args[0], Expr::Range { range_ms: 300_000, .. }));
        }
    }

    #[test]
    fn selectors_carry_the_name_as_a_matcher() {
        let expr = parse(r#"http_requests_total{job="items", status=~"5.."}"#).unwrap();
        let selectors = expr.selectors();
        let names: Vec<(&str, MatchOp, &str)> =
            selectors[0].iter().map(|m| (m.name.as_str(), m.op, m.value.as_str())).collect();
        assert_eq!(
            names,
            [
                ("__name__", MatchOp::Equal, "http_requests_total"),
                ("job", MatchOp::Equal, "items"),
                ("status", MatchOp::Regex, "5..")
            ]
        );
        assert!(selectors[0][2].matches("503") && !selectors[0][2].matches("200"));
    }

    #[test]
    fn type_errors() {
        for (text, expected) in [
            ("rate(x)", "must be a range vector"),
            ("x[5m]", "range vector cannot be a query's result"),
            ("1 > 2", "must use the `bool` modifier"),
            ("1 and x", "set operators"),
            ("sum(1)", "an aggregation takes an instant vector"),
            ("x + bool y", "comparison operators"),
            (r#"{job=""}"#, "at least one matcher"),
            ("histogram_quantile(0.9)", "takes 2 argument(s)"),
            ("(x)[5m]", "can only follow a vector selector"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert_eq!(parse("x +\n  ) ").unwrap_err().to_string().split(": ").next(), Some("parse error at 2:3"));
    }
}
