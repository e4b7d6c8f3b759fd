//! The little languages of a profile, all pure: templates that render a command line from
//! variables (`AT+CWJAP={wifi.ssid|q},{wifi.password|q}`), patterns that capture variables
//! from a response line (`+CIPSTAMAC:"{mac}"`) and conditions (`{year} >= 2024`).
//!
//! Template syntax: text with `{name}` or `{name|filter|filter:arg}`; `{{` and `}}` stand for
//! braces. Filters:
//!
//! | filter | result |
//! |---|---|
//! | `q` | an AT string: in double quotes, with `\`, `"` and `,` escaped by a backslash |
//! | `len` | the value's length in bytes |
//! | `short:N` | the value, or nothing when it is longer than N bytes (a long form takes it) |
//! | `count` | the number of items of a list |
//! | `qlist` | every item of a list as an AT string, comma-separated |
//! | `upper`, `lower` | case |
//! | `nocolon` | the value without `:` (a MAC as an id) |
//!
//! A pattern is text with `{name}` holes (`{}` or `{_}` capture nothing). It matches the start
//! of a line; each hole takes the shortest text up to the next literal, a final hole the rest.

use std::collections::BTreeMap;

/// A variable's value: text or a list, and whether it is a secret (never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value, or its items when it is a list.
    pub items: Vec<String>,
    /// Whether it is a list (`mqtt.alpn`).
    pub list: bool,
    /// Whether it is a secret (shown as `***`).
    pub secret: bool,
}

impl Value {
    /// A plain value.
    pub fn text(s: impl Into<String>) -> Value {
        Value {
            items: vec![s.into()],
            list: false,
            secret: false,
        }
    }

    /// A secret value.
    pub fn secret(s: impl Into<String>) -> Value {
        Value {
            secret: true,
            ..Value::text(s)
        }
    }

    /// A list value.
    pub fn list(items: Vec<String>) -> Value {
        Value {
            items,
            list: true,
            secret: false,
        }
    }

    /// The value as one string (a list joined by commas).
    pub fn as_text(&self) -> String {
        self.items.join(",")
    }
}

/// Named values a template draws from: the job's settings and what identify captured.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    map: BTreeMap<String, Value>,
}

impl Vars {
    /// Sets a variable.
    pub fn set(&mut self, name: impl Into<String>, value: Value) {
        self.map.insert(name.into(), value);
    }

    /// Forgets a variable.
    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    /// Sets a plain text variable.
    pub fn set_text(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.set(name, Value::text(value));
    }

    /// A variable's value, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// The text of a variable, empty when unset.
    pub fn text(&self, name: &str) -> String {
        self.get(name).map(Value::as_text).unwrap_or_default()
    }

    /// Every non-secret variable, for reports.
    pub fn public(&self) -> impl Iterator<Item = (&str, String)> {
        self.map
            .iter()
            .filter(|(_, v)| !v.secret)
            .map(|(k, v)| (k.as_str(), v.as_text()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Quote,
    /// Quoted without escapes, as 3GPP modules (Quectel, Luat) read a string parameter.
    QuotePlain,
    Len,
    Short(usize),
    Count,
    QuoteList,
    Upper,
    Lower,
    NoColon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var { name: String, filters: Vec<Filter> },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// A rendered template: the real text and the text safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// What to send.
    pub text: String,
    /// What to show (secrets as `***`).
    pub shown: String,
    /// Whether a secret went into it.
    pub secret: bool,
}

/// Why a template, a capture pattern, a condition or a duration could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template or pattern: what is wrong and where.
    #[error("{0}")]
    Syntax(String),
    /// A variable it uses has no value.
    #[error("variable `{0}` is not set")]
    Unset(String),
    /// It rendered to something that is not a valid value (a duration).
    #[error(transparent)]
    Value(#[from] crate::units::ValueError),
}

fn syntax(message: String) -> TemplateError {
    TemplateError::Syntax(message)
}

impl Template {
    /// Parses a template; the error says what is wrong and where in the text.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &source[i + 1..];
                    let end = rest.find('}').ok_or_else(|| {
                        syntax(format!("`{{` at byte {i} is never closed by `}}`"))
                    })?;
                    let inner = &rest[..end];
                    for _ in 0..=inner.chars().count() {
                        chars.next();
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(parse_var(inner)?);
                }
                '}' => {
                    return Err(syntax(format!(
                        "stray `}}` at byte {i} (write `}}}}` for a brace)"
                    )));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template {
            source: source.to_string(),
            pieces,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the template uses.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var { name, .. } => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Renders with `vars`; an unset variable is an error naming it.
    pub fn render(&self, vars: &Vars) -> Result<Rendered, TemplateError> {
        let mut out = Rendered {
            text: String::new(),
            shown: String::new(),
            secret: false,
        };
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => {
                    out.text.push_str(t);
                    out.shown.push_str(t);
                }
                Piece::Var { name, filters } => {
                    let value = vars
                        .get(name)
                        .ok_or_else(|| TemplateError::Unset(name.clone()))?;
                    let text = apply(value, filters);
                    // Lengths and counts of a secret give nothing away.
                    let reveals = !filters
                        .iter()
                        .any(|f| matches!(f, Filter::Len | Filter::Count));
                    if value.secret && reveals {
                        out.secret = true;
                        out.shown.push_str(if filters.contains(&Filter::Quote) {
                            "\"***\""
                        } else {
                            "***"
                        });
                    } else {
                        out.shown.push_str(&text);
                    }
                    out.text.push_str(&text);
                }
            }
        }
        Ok(out)
    }
}

impl Template {
    /// What to show a user: the rendered text with secrets hidden, or the template itself when
    /// a variable is not set (an error message must still say something).
    pub fn shown(&self, vars: &Vars) -> String {
        self.render(vars)
            .map(|r| r.shown)
            .unwrap_or_else(|_| self.source.clone())
    }
}

fn parse_var(inner: &str) -> Result<Piece, TemplateError> {
    let mut parts = inner.split('|');
    let name = parts.next().unwrap_or("").trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(syntax(format!(
            "`{{{inner}}}`: a variable name is letters, digits, `_`, `-` and `.`"
        )));
    }
    let filters = parts
        .map(|f| {
            let f = f.trim();
            Ok(match f.split_once(':') {
                Some(("short", n)) => Filter::Short(
                    n.parse()
                        .map_err(|_| syntax(format!("`{f}`: short takes a number of bytes")))?,
                ),
                _ => match f {
                    "q" => Filter::Quote,
                    "qs" => Filter::QuotePlain,
                    "len" => Filter::Len,
                    "count" => Filter::Count,
                    "qlist" => Filter::QuoteList,
                    "upper" => Filter::Upper,
                    "lower" => Filter::Lower,
                    "nocolon" => Filter::NoColon,
                    _ => {
                        return Err(syntax(format!(
                            "unknown filter `{f}` (known: q, qs, len, short:N, count, qlist, upper, lower, nocolon)"
                        )));
                    }
                },
            })
        })
        .collect::<Result<Vec<_>, TemplateError>>()?;
    Ok(Piece::Var {
        name: name.to_string(),
        filters,
    })
}

fn apply(value: &Value, filters: &[Filter]) -> String {
    let mut items = value.items.clone();
    let mut joined: Option<String> = None;
    for f in filters {
        let cur = || joined.clone().unwrap_or_else(|| items.join(","));
        match f {
            Filter::Quote => joined = Some(quote(&cur())),
            Filter::QuotePlain => joined = Some(format!("\"{}\"", cur())),
            Filter::Len => joined = Some(cur().len().to_string()),
            Filter::Short(n) => {
                let c = cur();
                joined = Some(if c.len() > *n { String::new() } else { c });
            }
            Filter::Count => joined = Some(items.len().to_string()),
            Filter::QuoteList => {
                joined = Some(items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(","))
            }
            Filter::Upper => {
                items = items.iter().map(|i| i.to_uppercase()).collect();
                joined = joined.map(|j| j.to_uppercase());
            }
            Filter::Lower => {
                items = items.iter().map(|i| i.to_lowercase()).collect();
                joined = joined.map(|j| j.to_lowercase());
            }
            Filter::NoColon => {
                items = items.iter().map(|i| i.replace(':', "")).collect();
                joined = joined.map(|j| j.replace(':', ""));
            }
        }
    }
    joined.unwrap_or_else(|| items.join(","))
}

/// An AT string parameter: double quotes, with `\`, `"` and `,` escaped by a backslash.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A capture pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    /// Literal, then (hole, literal) pairs.
    head: String,
    holes: Vec<(Option<String>, String)>,
}

impl Pattern {
    /// Parses a capture pattern (`+CIPSTAMAC:"{mac}"`).
    pub fn parse(source: &str) -> Result<Pattern, TemplateError> {
        let mut head = None;
        let mut holes = Vec::new();
        let mut rest = source;
        let mut literal = String::new();
        let mut pending: Option<Option<String>> = None;
        loop {
            match rest.find('{') {
                None => {
                    literal.push_str(rest);
                    break;
                }
                Some(i) => {
                    literal.push_str(&rest[..i]);
                    let after = &rest[i + 1..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| syntax(format!("`{{` at byte {i} is never closed")))?;
                    let name = after[..end].trim();
                    let name = match name {
                        "" | "_" => None,
                        n if n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.')) =>
                        {
                            Some(n.to_string())
                        }
                        n => return Err(syntax(format!("`{{{n}}}` is not a variable name"))),
                    };
                    match pending.take() {
                        None => head = Some(std::mem::take(&mut literal)),
                        Some(prev) => {
                            if literal.is_empty() {
                                return Err(syntax(
                                    "two holes need text between them to know where one ends"
                                        .into(),
                                ));
                            }
                            holes.push((prev, std::mem::take(&mut literal)));
                        }
                    }
                    pending = Some(name);
                    rest = &after[end + 1..];
                }
            }
        }
        match pending {
            None => head = Some(literal),
            Some(prev) => holes.push((prev, literal)),
        }
        Ok(Pattern {
            source: source.to_string(),
            head: head.unwrap_or_default(),
            holes,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names this pattern captures.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.holes.iter().filter_map(|(n, _)| n.as_deref())
    }

    /// Matches the start of `line`; returns the captured values.
    pub fn captures(&self, line: &str) -> Option<Vec<(String, String)>> {
        let mut rest = line.strip_prefix(self.head.as_str())?;
        let mut out = Vec::new();
        let last = self.holes.len().saturating_sub(1);
        for (i, (name, literal)) in self.holes.iter().enumerate() {
            let (value, after) = if literal.is_empty() && i == last {
                (rest, "")
            } else {
                let at = rest.find(literal.as_str())?;
                (&rest[..at], &rest[at + literal.len()..])
            };
            if let Some(name) = name {
                out.push((name.clone(), value.trim().to_string()));
            }
            rest = after;
        }
        Some(out)
    }
}

/// A condition: a rendered template that is either `A OP B` (numbers compared; `==` and `!=`
/// also compare text) or a single value, true when non-empty and not `0` or `false`; `||`
/// joins alternatives (`{reg} == 1 || {reg} == 5`) and `&&` binds tighter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition(pub Template);

impl Condition {
    /// Parses a condition.
    pub fn parse(source: &str) -> Result<Condition, TemplateError> {
        Template::parse(source).map(Condition)
    }

    /// Whether the condition holds with `vars`.
    pub fn eval(&self, vars: &Vars) -> Result<bool, TemplateError> {
        let text = self.0.render(vars)?.text;
        Ok(eval(&text))
    }
}

fn eval(text: &str) -> bool {
    if text.contains("||") {
        return text.split("||").any(eval);
    }
    if text.contains("&&") {
        return text.split("&&").all(eval);
    }
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some((a, b)) = text.split_once(op) {
            let (a, b) = (a.trim(), b.trim());
            return match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => match op {
                    ">=" => x >= y,
                    "<=" => x <= y,
                    "==" => x == y,
                    "!=" => x != y,
                    ">" => x > y,
                    _ => x < y,
                },
                _ => match op {
                    "==" => a == b,
                    "!=" => a != b,
                    // Not a number (nothing captured yet): the condition does not hold.
                    _ => false,
                },
            };
        }
    }
    let t = text.trim();
    !(t.is_empty() || t == "0" || t.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.set_text("wifi.ssid", "lab, \"2\"");
        v.set("wifi.password", Value::secret("p\\w"));
        v.set_text("mac", "24:0a:c4:12:34:56");
        v.set("alpn", Value::list(vec!["a".into(), "b,c".into()]));
        v.set_text("long", "x".repeat(300));
        v
    }

    #[test]
    fn renders_with_filters_and_hides_secrets() {
        let t = Template::parse("AT+CWJAP={wifi.ssid|q},{wifi.password|q}").unwrap();
        let r = t.render(&vars()).unwrap();
        assert_eq!(r.text, r#"AT+CWJAP="lab\, \"2\"","p\\w""#);
        assert_eq!(r.shown, r#"AT+CWJAP="lab\, \"2\"","***""#);
        assert!(r.secret);
        let t = Template::parse("{wifi.password|len} {mac|nocolon|upper} {{x}}").unwrap();
        let r = t.render(&vars()).unwrap();
        assert_eq!(r.shown, "3 240AC4123456 {x}");
        assert!(!r.secret);
        let t = Template::parse("{alpn|count},{alpn|qlist}|{long|short:256|q}").unwrap();
        assert_eq!(t.render(&vars()).unwrap().text, r#"2,"a","b\,c"|"""#);
        assert!(
            Template::parse("{nope}")
                .unwrap()
                .render(&vars())
                .unwrap_err()
                .to_string()
                .contains("`nope`")
        );
        assert!(
            Template::parse("{a|zap}")
                .unwrap_err()
                .to_string()
                .contains("zap")
        );
        assert!(Template::parse("{a").is_err());
        assert!(Template::parse("a}").is_err());
    }

    #[test]
    fn patterns_capture() {
        let p = Pattern::parse("AT version:{firmware}({} - {chip} - ").unwrap();
        let c = p
            .captures("AT version:3.2.0.0(s-ec2dec2 - ESP32 - Jul 28 2023 07:05:28)")
            .unwrap();
        assert_eq!(
            c,
            vec![
                ("firmware".into(), "3.2.0.0".into()),
                ("chip".into(), "ESP32".into())
            ]
        );
        assert!(
            p.captures("AT version:2.1.0.0-dev(044790d - Dec 30 2019 10:16:10)")
                .is_none()
        );
        let p = Pattern::parse("+CIPSNTPTIME:{}:{}:{} {year}").unwrap();
        assert_eq!(
            p.captures("+CIPSNTPTIME:Thu Jan  1 00:02:08 1970").unwrap(),
            vec![("year".into(), "1970".into())]
        );
        let p = Pattern::parse("+CIPSTAMAC:\"{mac}\"").unwrap();
        assert_eq!(
            p.captures("+CIPSTAMAC:\"24:0a:c4:12:34:56\"").unwrap()[0].1,
            "24:0a:c4:12:34:56"
        );
        assert!(Pattern::parse("{a}{b}").is_err());
    }

    #[test]
    fn conditions() {
        let mut v = Vars::default();
        v.set_text("year", "1970");
        let c = Condition::parse("{year} >= 2024").unwrap();
        assert!(!c.eval(&v).unwrap());
        v.set_text("year", "2026");
        assert!(c.eval(&v).unwrap());
        v.set_text("year", "");
        assert!(!c.eval(&v).unwrap());
        v.set_text("sni", "");
        assert!(!Condition::parse("{sni}").unwrap().eval(&v).unwrap());
        v.set_text("sni", "x");
        assert!(Condition::parse("{sni}").unwrap().eval(&v).unwrap());
        assert!(Condition::parse("{sni} == x").unwrap().eval(&v).unwrap());
    }
}
