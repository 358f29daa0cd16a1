//! Instant evaluation of a parsed query, following Prometheus 2.x's engine
//! (promql/engine.go, functions.go, quantile.go) for the subset `promql` accepts.
//!
//! Ranges and the 5-minute lookback are closed intervals, `[at - range, at]`, as in
//! Prometheus 2.x (3.0 made them left-open). The promtool tests of the rule files pass
//! either way; closed is what the promtool of their time computed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::promql::{AggregateOp, BinaryOp, Expr, Function, Grouping, Matcher, VectorMatching};

/// A series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// One sample of an instant vector.
type Sample = (Labels, f64);

/// Where samples come from.
pub trait Source {
    /// Every series all of whose matchers match (a matcher on an absent label matches as on
    /// "" — Prometheus semantics), with its samples whose timestamp t (ms) satisfies
    /// from <= t <= to, ascending by t. Series with no sample in range may be omitted.
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Vec<(Labels, Vec<(i64, f64)>)>;
}

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    /// Sorted by labels.
    Vector(Vec<(Labels, f64)>),
}

/// Why an evaluation failed (the messages are Prometheus's where it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

/// How far back an instant selector looks for a series' latest sample (Prometheus's
/// default `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Evaluates `expr` at `at_ms` (milliseconds since the epoch, or since a test's start).
pub fn evaluate(expr: &Expr, source: &dyn Source, at_ms: i64) -> Result<Value, EvalError> {
    let mut value = eval(expr, source, at_ms)?;
    if let Value::Vector(samples) = &mut value {
        samples.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(value)
}

fn eval(expr: &Expr, source: &dyn Source, at: i64) -> Result<Value, EvalError> {
    Ok(match expr {
        Expr::Number(n) => Value::Scalar(*n),
        Expr::Vector(matchers) => Value::Vector(
            source
                .select(matchers, at - LOOKBACK_MS, at)
                .into_iter()
                .filter_map(|(labels, points)| points.last().map(|&(_, v)| (labels, v)))
                .collect(),
        ),
        Expr::Range { .. } => return Err(EvalError("a range vector can only be a function's argument".into())),
        Expr::Call { func, args } => Value::Vector(unique(call(*func, args, source, at)?)?),
        Expr::Aggregate { op, grouping, expr } => Value::Vector(aggregate(*op, grouping, vector(expr, source, at)?)),
        Expr::Binary { op, lhs, rhs, return_bool, matching } => {
            let (lhs, rhs) = (eval(lhs, source, at)?, eval(rhs, source, at)?);
            match binary(*op, lhs, rhs, *return_bool, matching)? {
                Value::Vector(samples) => Value::Vector(unique(samples)?),
                scalar => scalar,
            }
        }
        Expr::Negate(inner) => match eval(inner, source, at)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Vector(samples) => {
                Value::Vector(unique(samples.into_iter().map(|(labels, v)| (without_name(labels), -v)).collect())?)
            }
        },
    })
}

fn vector(expr: &Expr, source: &dyn Source, at: i64) -> Result<Vec<Sample>, EvalError> {
    match eval(expr, source, at)? {
        Value::Vector(samples) => Ok(samples),
        Value::Scalar(_) => Err(EvalError("expected an instant vector, got a scalar".into())),
    }
}

fn without_name(mut labels: Labels) -> Labels {
    labels.remove("__name__");
    labels
}

/// Prometheus refuses a result in which two samples have the same labels, which dropping
/// `__name__` can cause (`rate({__name__=~"a|b"}[1m])` with equal other labels).
fn unique(samples: Vec<Sample>) -> Result<Vec<Sample>, EvalError> {
    let mut seen = HashSet::new();
    for (labels, _) in &samples {
        if !seen.insert(labels) {
            return Err(EvalError("vector cannot contain metrics with the same labelset".into()));
        }
    }
    Ok(samples)
}

fn call(func: Function, args: &[Expr], source: &dyn Source, at: i64) -> Result<Vec<Sample>, EvalError> {
    if func == Function::HistogramQuantile {
        let [q, buckets] = args else { return Err(EvalError("histogram_quantile takes two arguments".into())) };
        let Value::Scalar(q) = eval(q, source, at)? else {
            return Err(EvalError("histogram_quantile's first argument must be a scalar".into()));
        };
        return Ok(histogram_quantile(q, vector(buckets, source, at)?));
    }
    let [Expr::Range { matchers, range_ms }] = args else {
        return Err(EvalError("this function takes one range vector".into()));
    };
    let (start, end) = (at - range_ms, at);
    let series = source.select(matchers, start, end);
    let result = series.into_iter().filter_map(|(labels, points)| {
        let value = match func {
            Function::Rate => extrapolated_rate(&points, start, end, *range_ms, true),
            Function::Increase => extrapolated_rate(&points, start, end, *range_ms, false),
            Function::MinOverTime => {
                points.iter().map(|p| p.1).reduce(|min, v| if v < min || min.is_nan() { v } else { min })
            }
            Function::MaxOverTime => {
                points.iter().map(|p| p.1).reduce(|max, v| if v > max || max.is_nan() { v } else { max })
            }
            Function::AvgOverTime => (!points.is_empty())
                .then(|| points.iter().enumerate().fold(0.0, |mean, (i, &(_, v))| mean_step(mean, v, (i + 1) as f64))),
            // Returned above: it takes no range vector.
            Function::HistogramQuantile => None,
        };
        value.map(|v| (without_name(labels), v))
    });
    Ok(result.collect())
}

/// One step of Prometheus's incremental mean (avg, avg_over_time), which avoids overflow
/// and keeps an infinite mean rather than turning it into NaN.
fn mean_step(mean: f64, v: f64, count: f64) -> f64 {
    if mean.is_infinite() && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || (v.is_finite())) {
        return mean;
    }
    mean + v / count - mean / count
}

/// Prometheus's `extrapolatedRate` for counters: the increase between the first and last
/// sample in the window, corrected for counter resets, extrapolated towards the window's
/// ends (all the way if the gap is under 1.1 average intervals, else half an interval, and
/// never below the counter's zero point). `None` with fewer than two samples.
fn extrapolated_rate(points: &[(i64, f64)], start: i64, end: i64, range_ms: i64, per_second: bool) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (points.first()?, points.last()?);
    if points.len() < 2 {
        return None;
    }
    let mut increase = last_v - first_v;
    for pair in points.windows(2) {
        if pair[1].1 < pair[0].1 {
            increase += pair[0].1;
        }
    }
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let mut to_start = seconds(first_t - start);
    let to_end = seconds(end - last_t);
    let sampled = seconds(last_t - first_t);
    let average = sampled / (points.len() - 1) as f64;
    if increase > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / increase);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { average / 2.0 };
    interval += if to_end < threshold { to_end } else { average / 2.0 };
    let mut factor = interval / sampled;
    if per_second {
        factor /= seconds(range_ms);
    }
    Some(increase * factor)
}

/// `histogram_quantile` over classic buckets: samples grouped by their labels without `le`
/// and `__name__`; samples whose `le` is missing or no number are ignored.
fn histogram_quantile(q: f64, samples: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for (mut labels, count) in samples {
        let Some(Ok(upper)) = labels.remove("le").map(|le| le.parse::<f64>()) else { continue };
        groups.entry(without_name(labels)).or_default().push((upper, count));
    }
    groups.into_iter().map(|(labels, buckets)| (labels, bucket_quantile(q, buckets))).collect()
}

/// Prometheus's `bucketQuantile`: buckets are `(upper bound, cumulative count)`.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound (from series differing in other labels) are one bucket.
    buckets.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    // Counts must not fall as bounds rise; scrapes out of step can make them.
    let mut max = f64::NEG_INFINITY;
    for bucket in &mut buckets {
        if bucket.1 > max {
            max = bucket.1;
        } else if bucket.1 < max {
            bucket.1 = max;
        }
    }
    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].iter().position(|bucket| bucket.1 >= rank).unwrap_or(n - 1);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn aggregate(op: AggregateOp, grouping: &Grouping, samples: Vec<Sample>) -> Vec<Sample> {
    // Per group: the running value and the number of samples in it.
    let mut groups: BTreeMap<Labels, (f64, f64)> = BTreeMap::new();
    for (labels, v) in samples {
        let key: Labels = labels
            .into_iter()
            .filter(|(name, _)| match grouping {
                Grouping::By(keep) => keep.contains(name),
                Grouping::Without(drop) => name != "__name__" && !drop.contains(name),
            })
            .collect();
        let Some((value, count)) = groups.get_mut(&key) else {
            groups.insert(key, (if op == AggregateOp::Count { 1.0 } else { v }, 1.0));
            continue;
        };
        *count += 1.0;
        *value = match op {
            AggregateOp::Sum => *value + v,
            AggregateOp::Min if v < *value || value.is_nan() => v,
            AggregateOp::Max if v > *value || value.is_nan() => v,
            AggregateOp::Min | AggregateOp::Max => *value,
            AggregateOp::Avg => mean_step(*value, v, *count),
            AggregateOp::Count => *count,
        };
    }
    groups.into_iter().map(|(labels, (value, _))| (labels, value)).collect()
}

/// `(value, keep)` of one pair of operands: comparisons keep the left value when true.
fn operate(op: BinaryOp, l: f64, r: f64) -> (f64, bool) {
    let arithmetic = match op {
        BinaryOp::Add => l + r,
        BinaryOp::Sub => l - r,
        BinaryOp::Mul => l * r,
        BinaryOp::Div => l / r,
        BinaryOp::Mod => l % r,
        BinaryOp::Pow => l.powf(r),
        BinaryOp::Eq => return (l, l == r),
        BinaryOp::Ne => return (l, l != r),
        BinaryOp::Gt => return (l, l > r),
        BinaryOp::Lt => return (l, l < r),
        BinaryOp::Ge => return (l, l >= r),
        BinaryOp::Le => return (l, l <= r),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => return (l, true),
    };
    (arithmetic, true)
}

fn binary(
    op: BinaryOp,
    lhs: Value,
    rhs: Value,
    return_bool: bool,
    matching: &VectorMatching,
) -> Result<Value, EvalError> {
    // Arithmetic and `bool` comparisons make new values, no longer of the named metric.
    let drop_name = !op.is_comparison() || return_bool;
    let finish = |(value, keep): (f64, bool)| match (return_bool, keep) {
        (true, keep) => Some(if keep { 1.0 } else { 0.0 }),
        (false, true) => Some(value),
        (false, false) => None,
    };
    let (samples, scalar, scalar_left) = match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            return finish(operate(op, l, r))
                .map(Value::Scalar)
                .ok_or_else(|| EvalError("comparisons between scalars must use the `bool` modifier".into()));
        }
        (Value::Vector(l), Value::Vector(r)) if op.is_set() => {
            return Ok(Value::Vector(set_operation(op, l, r, matching)));
        }
        (Value::Vector(l), Value::Vector(r)) => {
            return vector_vector(op, l, r, return_bool, matching).map(Value::Vector);
        }
        (Value::Vector(v), Value::Scalar(s)) => (v, s, false),
        (Value::Scalar(s), Value::Vector(v)) => (v, s, true),
    };
    let result = samples.into_iter().filter_map(|(labels, v)| {
        let (value, keep) = if scalar_left { operate(op, scalar, v) } else { operate(op, v, scalar) };
        // A filter keeps the vector's sample value, on whichever side the vector stands.
        let value = if op.is_comparison() { v } else { value };
        let value = finish((value, keep))?;
        Some((if drop_name { without_name(labels) } else { labels }, value))
    });
    Ok(Value::Vector(result.collect()))
}

/// The labels two samples are matched on, as one string.
fn signature(labels: &Labels, matching: &VectorMatching) -> String {
    let mut signature = String::new();
    for (name, value) in labels {
        let included = match matching {
            VectorMatching::On(on) => on.contains(name),
            VectorMatching::Ignoring(ignored) => name != "__name__" && !ignored.contains(name),
        };
        if included {
            signature.extend([name.as_str(), "\u{ff}", value.as_str(), "\u{ff}"]);
        }
    }
    signature
}

fn set_operation(op: BinaryOp, lhs: Vec<Sample>, rhs: Vec<Sample>, matching: &VectorMatching) -> Vec<Sample> {
    let right: HashSet<String> = rhs.iter().map(|(labels, _)| signature(labels, matching)).collect();
    match op {
        BinaryOp::And => lhs.into_iter().filter(|(labels, _)| right.contains(&signature(labels, matching))).collect(),
        BinaryOp::Unless => {
            lhs.into_iter().filter(|(labels, _)| !right.contains(&signature(labels, matching))).collect()
        }
        _ => {
            let left: HashSet<String> = lhs.iter().map(|(labels, _)| signature(labels, matching)).collect();
            let extra = rhs.into_iter().filter(|(labels, _)| !left.contains(&signature(labels, matching)));
            lhs.into_iter().chain(extra).collect()
        }
    }
}

/// One-to-one matching of two vectors for arithmetic and comparisons.
fn vector_vector(
    op: BinaryOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    return_bool: bool,
    matching: &VectorMatching,
) -> Result<Vec<Sample>, EvalError> {
    let mut right: HashMap<String, &Sample> = HashMap::new();
    for sample in &rhs {
        if let Some(other) = right.insert(signature(&sample.0, matching), sample) {
            return Err(EvalError(format!(
                "found duplicate series for the match group on the right hand-side of the operation: [{:?}, {:?}]; \
                 many-to-many matching not allowed: matching labels must be unique on one side",
                other.0, sample.0
            )));
        }
    }
    let mut matched = HashSet::new();
    let mut out = Vec::new();
    for (labels, l) in lhs {
        let signature = signature(&labels, matching);
        let Some((_, r)) = right.get(&signature) else { continue };
        let (value, keep) = operate(op, l, *r);
        let value = match (return_bool, keep) {
            (true, keep) => f64::from(u8::from(keep)),
            (false, true) => value,
            (false, false) => continue,
        };
        if !matched.insert(signature) {
            return Err(EvalError(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let mut labels = if !op.is_comparison() || return_bool { without_name(labels) } else { labels };
        match matching {
            VectorMatching::On(on) => labels.retain(|name, _| on.contains(name)),
            VectorMatching::Ignoring(ignored) => labels.retain(|name, _| !ignored.contains(name)),
        }
        out.push((labels, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
