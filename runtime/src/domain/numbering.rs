//! Number formats of registrations and permits, as regional PTSP systems write them
//! (`REG/PBG/{YYYY}/{NNNNN}`, `503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}`). A format is parsed once per
//! release; the counter behind `{N…N}` is the store's, this module only renders a number.

use std::fmt::{self, Write as _};

use chrono::{Datelike, NaiveDate};
use serde::{Serialize, Serializer};

/// The application kinds; each may have its own formats (`[numbering.<kind>]`).
pub const KINDS: &[&str] = &["baru", "perubahan", "perpanjangan"];

/// The registration format of a permit type whose `permit.toml` names none.
pub const DEFAULT_REGISTRATION: &str = "REG/{YYYY}/{NNNNNN}";

/// What a permit type contributes to its numbers: `{J…J}` (its number in the office's list of
/// permit types, `type_number` in `[numbering]`) and `{KDPER}` (its code, `code` in
/// `[numbering]`, else its id in capitals).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct PermitCode {
    #[serde(rename = "type_number", skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    pub code: String,
}

/// Which number a counter counts. The levy cycle adds `skrd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberKind {
    Registration,
    Permit,
}

impl NumberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::Registration => "registration",
            NumberKind::Permit => "permit",
        }
    }
}

/// Why a format cannot be used; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberingError {
    #[error("unknown token `{{{0}}}` (known: {{N…N}}, {{MM}}, {{mm}}, {{YYYY}}, {{YY}}, {{DD}}, {{J…J}}, {{KDPER}})")]
    UnknownToken(String),
    #[error("unbalanced `{brace}` at character {at}")]
    Unbalanced { brace: char, at: usize },
    #[error("no sequence token `{{N…N}}`: every number needs one")]
    NoSequence,
    #[error("more than one sequence token `{{N…N}}`")]
    TwoSequences,
}

/// One piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(String),
    /// `{N…N}`: the sequence, zero-padded to this many digits (printed in full when wider).
    Sequence(usize),
    /// `{MM}`: the month in Roman numerals, I–XII.
    RomanMonth,
    /// `{mm}`: the month as two digits.
    Month,
    Year,
    ShortYear,
    Day,
    /// `{J…J}`: the permit type's number, zero-padded to this many digits.
    TypeNumber(usize),
    /// `{KDPER}`: the permit type's code.
    Code,
}

/// A parsed number format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    source: String,
    tokens: Vec<Token>,
}

impl Format {
    pub fn parse(source: &str) -> Result<Format, NumberingError> {
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut sequences = 0;
        let mut chars = source.chars().enumerate();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, inner) in chars.by_ref() {
                        match inner {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => {
                                return Err(NumberingError::Unbalanced {
                                    brace: '{',
                                    at: at + 1,
                                })
                            }
                            _ => name.push(inner),
                        }
                    }
                    if !closed {
                        return Err(NumberingError::Unbalanced {
                            brace: '{',
                            at: at + 1,
                        });
                    }
                    let token = token(&name)?;
                    if matches!(token, Token::Sequence(_)) {
                        sequences += 1;
                    }
                    if !text.is_empty() {
                        tokens.push(Token::Text(std::mem::take(&mut text)));
                    }
                    tokens.push(token);
                }
                '}' => {
                    return Err(NumberingError::Unbalanced {
                        brace: '}',
                        at: at + 1,
                    })
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text));
        }
        match sequences {
            0 => Err(NumberingError::NoSequence),
            1 => Ok(Format {
                source: source.to_owned(),
                tokens,
            }),
            _ => Err(NumberingError::TwoSequences),
        }
    }

    /// The number `seq` assigned on `on` for `permit`.
    pub fn render(&self, seq: u64, on: NaiveDate, permit: &PermitCode) -> String {
        let mut out = String::new();
        for token in &self.tokens {
            // Writing to a String cannot fail.
            let _ = match token {
                Token::Text(t) => out.write_str(t),
                Token::Sequence(width) => write!(out, "{seq:0width$}"),
                Token::RomanMonth => out.write_str(roman_month(on.month())),
                Token::Month => write!(out, "{:02}", on.month()),
                Token::Year => write!(out, "{:04}", on.year()),
                Token::ShortYear => write!(out, "{:02}", on.year().rem_euclid(100)),
                Token::Day => write!(out, "{:02}", on.day()),
                Token::TypeNumber(width) => write!(out, "{:0width$}", permit.number.unwrap_or(0)),
                Token::Code => out.write_str(&permit.code),
            };
        }
        out
    }

    /// The format as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the format prints the permit type's number (`{J…J}`), which must then be set.
    pub fn uses_type_number(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::TypeNumber(_)))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn token(name: &str) -> Result<Token, NumberingError> {
    let repeated = |c: char| !name.is_empty() && name.chars().all(|n| n == c);
    Ok(match name {
        "MM" => Token::RomanMonth,
        "mm" => Token::Month,
        "YYYY" => Token::Year,
        "YY" => Token::ShortYear,
        "DD" => Token::Day,
        "KDPER" => Token::Code,
        _ if repeated('N') => Token::Sequence(name.len()),
        _ if repeated('J') => Token::TypeNumber(name.len()),
        _ => return Err(NumberingError::UnknownToken(name.to_owned())),
    })
}

fn roman_month(month: u32) -> &'static str {
    const ROMAN: [&str; 12] = [
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
    ];
    month
        .checked_sub(1)
        .and_then(|i| ROMAN.get(i as usize))
        .copied()
        .unwrap_or("")
}

/// A permit type's formats: the defaults and the per-kind overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Numbering {
    /// The format as written, e.g. `REG/PBG/{YYYY}/{NNNNN}`.
    #[schema(value_type = String)]
    registration: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    permit: Option<Format>,
    /// Overrides by kind (`baru`, `perubahan`, `perpanjangan`); absent formats fall back to the
    /// defaults.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    kinds: std::collections::BTreeMap<String, KindFormats>,
    #[serde(flatten)]
    code: PermitCode,
}

/// The formats one kind overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct KindFormats {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub registration: Option<Format>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub permit: Option<Format>,
}

impl Default for Numbering {
    fn default() -> Self {
        Self {
            registration: default_registration(),
            permit: None,
            kinds: std::collections::BTreeMap::new(),
            code: PermitCode::default(),
        }
    }
}

fn default_registration() -> Format {
    Format {
        source: DEFAULT_REGISTRATION.to_owned(),
        tokens: vec![
            Token::Text("REG/".to_owned()),
            Token::Year,
            Token::Text("/".to_owned()),
            Token::Sequence(6),
        ],
    }
}

impl Numbering {
    /// `registration` defaults to [`DEFAULT_REGISTRATION`].
    pub fn new(
        registration: Option<Format>,
        permit: Option<Format>,
        kinds: std::collections::BTreeMap<String, KindFormats>,
        code: PermitCode,
    ) -> Self {
        Self {
            registration: registration.unwrap_or_else(default_registration),
            permit,
            kinds,
            code,
        }
    }

    /// The registration format of applications of `kind`: its override, else the default.
    pub fn registration(&self, kind: &str) -> Option<&Format> {
        self.format(NumberKind::Registration, kind).map(|(_, f)| f)
    }

    /// The permit number format of applications of `kind`; `None` when the permit type issues
    /// no numbered permit.
    pub fn permit(&self, kind: &str) -> Option<&Format> {
        self.format(NumberKind::Permit, kind).map(|(_, f)| f)
    }

    /// The format of `number` for `kind`, with the name of its counter's format: `default`, or
    /// the kind when it has its own format (each has its own counter).
    pub fn format(&self, number: NumberKind, kind: &str) -> Option<(&str, &Format)> {
        let own = self.kinds.get_key_value(kind).and_then(|(k, f)| {
            match number {
                NumberKind::Registration => f.registration.as_ref(),
                NumberKind::Permit => f.permit.as_ref(),
            }
            .map(|f| (k.as_str(), f))
        });
        own.or_else(|| match number {
            NumberKind::Registration => Some(("default", &self.registration)),
            NumberKind::Permit => self.permit.as_ref().map(|f| ("default", f)),
        })
    }

    /// Whether every kind has a permit number format.
    pub fn permit_for_every_kind(&self) -> bool {
        KINDS.iter().all(|k| self.permit(k).is_some())
    }

    pub fn code(&self) -> &PermitCode {
        &self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn render(format: &str, seq: u64, date: NaiveDate) -> String {
        let code = PermitCode {
            number: Some(7),
            code: "PBG".into(),
        };
        Format::parse(format).unwrap().render(seq, date, &code)
    }

    #[test]
    fn the_examples_of_the_decree_render() {
        assert_eq!(
            render("503/{NNNN}/SIPD/DPM-PTSP/{YYYY}", 112, on(2024, 3, 5)),
            "503/0112/SIPD/DPM-PTSP/2024"
        );
        assert_eq!(
            render("503/{NNNN}/PBG/DPMPTSP/{MM}/{YYYY}", 1, on(2026, 11, 30)),
            "503/0001/PBG/DPMPTSP/XI/2026"
        );
        assert_eq!(
            render("{NN}/KPTS/D-{JJ}/{YYYY}", 17, on(2024, 1, 2)),
            "17/KPTS/D-07/2024"
        );
        assert_eq!(
            render("{KDPER}-{YY}{mm}{DD}-{NNN}", 5, on(2026, 2, 9)),
            "PBG-260209-005"
        );
    }

    #[test]
    fn every_month_has_its_roman_numeral() {
        let months: Vec<String> = (1..=12)
            .map(|m| render("{MM}{N}", 1, on(2026, m, 1)))
            .collect();
        assert_eq!(
            months,
            [
                "I1", "II1", "III1", "IV1", "V1", "VI1", "VII1", "VIII1", "IX1", "X1", "XI1",
                "XII1"
            ]
        );
    }

    #[test]
    fn a_sequence_wider_than_its_ns_is_printed_in_full() {
        assert_eq!(render("REG/{NNN}", 123_456, on(2026, 1, 1)), "REG/123456");
    }

    #[test]
    fn bad_formats_name_what_is_wrong() {
        let err = |f: &str| Format::parse(f).unwrap_err().to_string();
        assert!(err("REG/{NNNN}/{XX}").starts_with("unknown token `{XX}`"));
        assert!(err("REG/{nnnn}").starts_with("unknown token `{nnnn}`"));
        assert_eq!(err("REG/{NNNN"), "unbalanced `{` at character 5");
        assert_eq!(err("REG/NNNN}"), "unbalanced `}` at character 9");
        assert_eq!(err("REG/{YY{NN}}"), "unbalanced `{` at character 5");
        assert_eq!(
            err("REG/{YYYY}"),
            "no sequence token `{N…N}`: every number needs one"
        );
        assert_eq!(err("{NN}/{NNN}"), "more than one sequence token `{N…N}`");
        assert!(err("REG/{}/{NN}").starts_with("unknown token `{}`"));
    }

    #[test]
    fn kinds_fall_back_to_the_default_formats() {
        let f = |s: &str| Format::parse(s).unwrap();
        let kinds = [(
            "perpanjangan".to_owned(),
            KindFormats {
                registration: None,
                permit: Some(f("P/{NN}")),
            },
        )]
        .into_iter()
        .collect();
        let n = Numbering::new(None, Some(f("{NN}")), kinds, PermitCode::default());
        assert_eq!(
            n.registration("baru").unwrap().as_str(),
            DEFAULT_REGISTRATION
        );
        assert_eq!(
            n.registration("baru")
                .unwrap()
                .render(3, on(2026, 1, 1), n.code()),
            "REG/2026/000003"
        );
        assert_eq!(n.permit("baru").unwrap().as_str(), "{NN}");
        assert_eq!(n.permit("perpanjangan").unwrap().as_str(), "P/{NN}");
        assert_eq!(
            n.format(NumberKind::Permit, "perpanjangan").map(|(k, _)| k),
            Some("perpanjangan")
        );
        assert_eq!(
            n.format(NumberKind::Registration, "perpanjangan")
                .map(|(k, _)| k),
            Some("default")
        );
        assert_eq!(Numbering::default().permit("baru"), None);
        assert_eq!(default_registration(), f(DEFAULT_REGISTRATION));
    }
}
