//! The part of Go's text/template that alert labels and annotations use: `{{ $labels.x }}`,
//! `{{ $value }}`, and `printf` in either form (`{{ $value | printf "%.0f" }}`,
//! `{{ printf "%.2f" $value }}`). Anything else is refused when the rule is loaded, so an
//! alert never shows a half-expanded text.

use super::Labels;

/// A parsed template.
#[derive(Debug, Clone)]
pub(super) struct Template(Vec<Part>);

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Action { operand: Operand, format: Option<Format> },
}

#[derive(Debug, Clone)]
enum Operand {
    Value,
    Label(String),
}

/// A `printf` format with exactly one verb: `prefix %verb suffix`.
#[derive(Debug, Clone)]
struct Format {
    prefix: String,
    verb: char,
    precision: Option<usize>,
    suffix: String,
}

impl Template {
    pub(super) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let mut literal = &rest[..open];
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or("unclosed action: `{{` without `}}`")?;
            let mut action = &after[..close];
            rest = &after[close + 2..];
            // `{{-` and `-}}` trim the white space beside the action, as in Go.
            if let Some(trimmed) = action.strip_prefix("- ") {
                literal = literal.trim_end();
                action = trimmed;
            }
            if let Some(trimmed) = action.strip_suffix(" -") {
                rest = rest.trim_start();
                action = trimmed;
            }
            if !literal.is_empty() {
                parts.push(Part::Text(literal.to_string()));
            }
            parts.push(parse_action(action.trim()).map_err(|e| format!("in `{{{{{action}}}}}`: {e}"))?);
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// The text for one alert: its series' labels (`__name__` included) and value.
    pub(super) fn expand(&self, labels: &Labels, value: f64) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Action { operand, format } => {
                    let argument = match operand {
                        Operand::Value => Argument::Float(value),
                        Operand::Label(name) => labels.get(name).map_or(Argument::Missing, |v| Argument::Str(v)),
                    };
                    match format {
                        Some(format) => out.push_str(&format.apply(argument)),
                        None => out.push_str(&argument.print()),
                    }
                }
            }
        }
        out
    }
}

/// `operand`, `operand | printf "fmt"` or `printf "fmt" operand`.
fn parse_action(action: &str) -> Result<Part, String> {
    let (operand, format) = match action.split_once('|') {
        Some((operand, pipe)) => {
            let format = pipe.trim().strip_prefix("printf").ok_or("only `printf` may follow `|`")?;
            (operand.trim(), Some(format.trim()))
        }
        None => match action.strip_prefix("printf") {
            Some(call) => {
                let call = call.trim_start();
                let end = quoted_end(call)?;
                (call[end..].trim(), Some(&call[..end]))
            }
            None => (action, None),
        },
    };
    let operand = match operand {
        "$value" | ".Value" => Operand::Value,
        _ => match operand.strip_prefix("$labels.").or_else(|| operand.strip_prefix(".Labels.")) {
            Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                Operand::Label(name.to_string())
            }
            _ => return Err(format!("`{operand}` is not supported; use $value or $labels.NAME")),
        },
    };
    let format = format.map(parse_format).transpose()?;
    Ok(Part::Action { operand, format })
}

/// The length of the double-quoted string at the start of `text`.
fn quoted_end(text: &str) -> Result<usize, String> {
    let body = text.strip_prefix('"').ok_or("printf needs a quoted format")?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Ok(i + 2),
            _ => escaped = false,
        }
    }
    Err("unterminated format string".to_string())
}

fn parse_format(quoted: &str) -> Result<Format, String> {
    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).ok_or("printf needs a quoted format")?;
    if inner.contains('\\') {
        return Err("escapes in printf formats are not supported".to_string());
    }
    let mut verbs = Vec::new();
    let mut chars = inner.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '%' {
            continue;
        }
        if chars.next_if(|(_, c)| *c == '%').is_some() {
            continue;
        }
        let mut precision = None;
        if chars.next_if(|(_, c)| *c == '.').is_some() {
            let mut digits = String::new();
            while let Some((_, d)) = chars.next_if(|(_, c)| c.is_ascii_digit()) {
                digits.push(d);
            }
            precision = Some(digits.parse().unwrap_or(0));
        }
        let (end, verb) = chars.next().ok_or("printf format ends in `%`")?;
        if !matches!(verb, 'v' | 's' | 'f') {
            return Err(format!("printf verb `%{verb}` is not supported (only %v, %s, %f and %.Nf)"));
        }
        verbs.push((start, end + verb.len_utf8(), verb, precision));
    }
    let [(start, end, verb, precision)] = verbs[..] else {
        return Err("a printf format must have exactly one verb".to_string());
    };
    let literal = |s: &str| s.replace("%%", "%");
    Ok(Format { prefix: literal(&inner[..start]), verb, precision, suffix: literal(&inner[end..]) })
}

enum Argument<'a> {
    Float(f64),
    Str(&'a str),
    /// A label the series lacks: Go's template yields no value.
    Missing,
}

impl Argument<'_> {
    /// As `{{ x }}` prints it.
    fn print(&self) -> String {
        match self {
            Argument::Float(v) => go_float(*v),
            Argument::Str(s) => s.to_string(),
            Argument::Missing => "<no value>".to_string(),
        }
    }
}

impl Format {
    /// Go's fmt.Sprintf with one argument, including its `%!verb(type=value)` complaints.
    fn apply(&self, argument: Argument) -> String {
        let body = match (self.verb, &argument) {
            ('v', Argument::Missing) => "<nil>".to_string(),
            ('v', _) | ('s', Argument::Str(_)) => argument.print(),
            ('f', Argument::Float(v)) if v.is_nan() => "NaN".to_string(),
            ('f', Argument::Float(v)) if v.is_infinite() => if *v > 0.0 { "+Inf" } else { "-Inf" }.to_string(),
            ('f', Argument::Float(v)) => format!("{v:.*}", self.precision.unwrap_or(6)),
            (verb, Argument::Float(v)) => format!("%!{verb}(float64={})", go_float(*v)),
            (verb, Argument::Str(s)) => format!("%!{verb}(string={s})"),
            (verb, Argument::Missing) => format!("%!{verb}(<nil>)"),
        };
        format!("{}{body}{}", self.prefix, self.suffix)
    }
}

/// Go's `%v` of a float64: the shortest representation that round-trips, in exponent form
/// when the exponent is below -4 or at least 6 (`1e+06`, `2.5e-05`), else plain (`10`).
pub(super) fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let scientific = format!("{v:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) || v == 0.0 {
        return format!("{v}");
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(template: &str, value: f64) -> String {
        let labels = Labels::from([("instance".to_string(), "vote-api-0".to_string())]);
        Template::parse(template).unwrap().expand(&labels, value)
    }

    #[test]
    fn go_float_formatting() {
        for (v, text) in [
            (10.0, "10"),
            (0.5, "0.5"),
            (2002.0, "2002"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.000025, "2.5e-05"),
            (-3.25, "-3.25"),
            (0.0, "0"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v), text, "{v}");
        }
    }

    #[test]
    fn expands_labels_values_and_printf() {
        assert_eq!(expand("on {{ $labels.instance }}: {{ $value }}", 10.0), "on vote-api-0: 10");
        assert_eq!(expand("{{ $value | printf \"%.0f\" }} queries", 2001.6), "2002 queries");
        assert_eq!(expand("{{ printf \"%.2f%%\" $value }}", 0.125), "0.12%");
        assert_eq!(expand("{{$value|printf \"%.1f\"}}", 2.25), "2.2");
        assert_eq!(expand("[{{ $labels.job }}]", 1.0), "[<no value>]");
        assert_eq!(expand("a {{- $value -}} b", 1.0), "a1b");
        assert_eq!(expand("{{ $value | printf \"%s\" }}", 1.5), "%!s(float64=1.5)");
    }

    #[test]
    fn refuses_what_it_cannot_expand() {
        assert!(Template::parse("{{ $value | humanize }}").unwrap_err().contains("printf"));
        assert!(Template::parse("{{ range $labels }}").is_err());
        assert!(Template::parse("{{ $value | printf \"%d\" }}").unwrap_err().contains("%d"));
        assert!(Template::parse("{{ $value ").is_err());
    }
}
