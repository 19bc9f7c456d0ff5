//! What the runtime's own checks say about a form, in the configured [`Language`]. Citizens and
//! front-office staff read these beside the rules' own messages, which are written in
//! Indonesian, so Indonesian is the default.

use crate::config::Language;

/// One problem a runtime check found in a field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem<'a> {
    UnknownField,
    Required,
    NotText,
    TooShort(usize),
    TooLong(usize),
    /// The pattern as declared.
    NoMatch(&'a str),
    /// The allowed values, joined.
    NotEnumValue(&'a str),
    /// The value given, then the allowed values joined.
    NotOneOf(&'a str, &'a str),
    NotBoolean,
    NotDateValue,
    NotDate(&'a str),
    NotNumber(Number),
    NotNumberText(&'a str, Number),
    NotWhole(&'a str),
    /// Bounds as decimal text.
    AtLeast(&'a str),
    AtMost(&'a str),
    GreaterThan(&'a str),
    LessThan(&'a str),
    TooLarge(&'a str),
    NotList,
    TooFewItems(usize),
    TooManyItems(usize),
    NullItem,
    NotObject,
    UnknownDocument(&'a str),
    DocumentTwice(&'a str),
    /// The requirement's code and name.
    MissingDocument(&'a str, &'a str),
}

/// The kind of number a numeric field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    Whole,
    Decimal,
}

impl Problem<'_> {
    pub fn text(&self, language: Language) -> String {
        match language {
            Language::Id => self.indonesian(),
            Language::En => self.english(),
        }
    }

    fn indonesian(&self) -> String {
        let number = |n: &Number| match n {
            Number::Whole => "bilangan bulat",
            Number::Decimal => "bilangan desimal",
        };
        match self {
            Self::UnknownField => "isian tidak dikenal".into(),
            Self::Required => "wajib diisi".into(),
            Self::NotText => "harus berupa teks".into(),
            Self::TooShort(n) => format!("paling sedikit {n} karakter"),
            Self::TooLong(n) => format!("paling banyak {n} karakter"),
            Self::NoMatch(p) => format!("tidak sesuai format yang ditentukan `{p}`"),
            Self::NotEnumValue(values) => format!("harus salah satu dari: {values}"),
            Self::NotOneOf(v, values) => format!("`{v}` bukan salah satu dari: {values}"),
            Self::NotBoolean => "harus true atau false".into(),
            Self::NotDateValue => "harus berupa tanggal (YYYY-MM-DD)".into(),
            Self::NotDate(v) => format!("`{v}` bukan tanggal (YYYY-MM-DD)"),
            Self::NotNumber(n) => format!("harus berupa {}", number(n)),
            Self::NotNumberText(v, n) => format!("`{v}` bukan {}", number(n)),
            Self::NotWhole(v) => format!("`{v}` bukan bilangan bulat"),
            Self::AtLeast(b) => format!("tidak boleh kurang dari {b}"),
            Self::AtMost(b) => format!("tidak boleh lebih dari {b}"),
            Self::GreaterThan(b) => format!("harus lebih dari {b}"),
            Self::LessThan(b) => format!("harus kurang dari {b}"),
            Self::TooLarge(v) => format!("`{v}` terlalu besar"),
            Self::NotList => "harus berupa daftar".into(),
            Self::TooFewItems(n) => format!("harus berisi paling sedikit {n} entri"),
            Self::TooManyItems(n) => format!("harus berisi paling banyak {n} entri"),
            Self::NullItem => "tidak boleh null".into(),
            Self::NotObject => "harus berupa objek".into(),
            Self::UnknownDocument(code) => format!("dokumen `{code}` tidak dikenal"),
            Self::DocumentTwice(code) => format!("dokumen `{code}` tercantum dua kali"),
            Self::MissingDocument(code, name) => {
                format!("dokumen wajib `{code}` ({name}) belum dilampirkan")
            }
        }
    }

    fn english(&self) -> String {
        let number = |n: &Number| match n {
            Number::Whole => "a whole number",
            Number::Decimal => "a decimal number",
        };
        let entries = |n: usize| {
            if n == 1 {
                "1 entry".to_owned()
            } else {
                format!("{n} entries")
            }
        };
        match self {
            Self::UnknownField => "unknown field".into(),
            Self::Required => "is required".into(),
            Self::NotText => "must be text".into(),
            Self::TooShort(n) => format!("must be at least {n} characters"),
            Self::TooLong(n) => format!("must be at most {n} characters"),
            Self::NoMatch(p) => format!("does not match the required format `{p}`"),
            Self::NotEnumValue(values) => format!("must be one of: {values}"),
            Self::NotOneOf(v, values) => format!("`{v}` is not one of: {values}"),
            Self::NotBoolean => "must be true or false".into(),
            Self::NotDateValue => "must be a date (YYYY-MM-DD)".into(),
            Self::NotDate(v) => format!("`{v}` is not a date (YYYY-MM-DD)"),
            Self::NotNumber(n) => format!("must be {}", number(n)),
            Self::NotNumberText(v, n) => format!("`{v}` is not {}", number(n)),
            Self::NotWhole(v) => format!("`{v}` is not a whole number"),
            Self::AtLeast(b) => format!("must be at least {b}"),
            Self::AtMost(b) => format!("must be at most {b}"),
            Self::GreaterThan(b) => format!("must be greater than {b}"),
            Self::LessThan(b) => format!("must be less than {b}"),
            Self::TooLarge(v) => format!("`{v}` is too large"),
            Self::NotList => "must be a list".into(),
            Self::TooFewItems(n) => format!("must have at least {}", entries(*n)),
            Self::TooManyItems(n) => format!("must have at most {}", entries(*n)),
            Self::NullItem => "must not be null".into(),
            Self::NotObject => "must be an object".into(),
            Self::UnknownDocument(code) => format!("unknown document `{code}`"),
            Self::DocumentTwice(code) => format!("document `{code}` is listed twice"),
            Self::MissingDocument(code, name) => {
                format!("missing required document `{code}` ({name})")
            }
        }
    }
}
