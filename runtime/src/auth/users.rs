//! What a user may be: the shapes an admin sends to create or change one, and their checks.
//! Writing users is `services::users`; resolving a user's token is [`super::authenticate`].

use serde::Deserialize;

use super::principal::ALL_PERMITS;
use super::Roles;

/// Longest username: it is the actor in audit entries and application histories.
pub const MAX_USERNAME: usize = 64;
/// Longest display name, in characters.
pub const MAX_NAME: usize = 200;
/// Digits of a NIP (Nomor Induk Pegawai, the civil servant's number).
pub const NIP_DIGITS: usize = 18;
/// Most permit types one user's list may name.
pub const MAX_PERMITS: usize = 1000;
/// Names the audit log already gives to other actors; a user called so would be mistaken for
/// them (`cli` is the command line; `startup` and `watch` start reloads).
pub const RESERVED_USERNAMES: &[&str] = &["cli", "startup", "watch"];

/// `POST /admin/users`, and `pintu user add`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub nip: Option<String>,
    pub roles: Vec<String>,
    /// Permit type ids, or `["*"]` for every permit type.
    pub permits: Vec<String>,
}

/// `PATCH /admin/users/{username}`: only the fields present change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub name: Option<String>,
    /// A NIP, or `""` to remove it.
    pub nip: Option<String>,
    pub roles: Option<Vec<String>>,
    pub permits: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// A field of a user that cannot be stored; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct InvalidUser {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: String) -> InvalidUser {
    InvalidUser { field, problem }
}

pub fn check_username(username: &str) -> Result<(), InvalidUser> {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-';
    if username.is_empty() || username.len() > MAX_USERNAME || !username.chars().all(ok_char) {
        return Err(invalid(
            "username",
            format!(
                "must be 1 to {MAX_USERNAME} of `a-z`, `0-9`, `.`, `_` and `-` (got `{username}`)"
            ),
        ));
    }
    if RESERVED_USERNAMES.contains(&username) {
        return Err(invalid(
            "username",
            format!("must not be `{username}`: the audit log names another actor so"),
        ));
    }
    Ok(())
}

/// The name, trimmed.
pub fn check_name(name: &str) -> Result<String, InvalidUser> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "must not be empty".into()));
    }
    if name.chars().count() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("is longer than {MAX_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not hold control characters".into()));
    }
    Ok(name.to_owned())
}

/// The NIP, or `None` for none (absent or empty).
pub fn check_nip(nip: Option<&str>) -> Result<Option<String>, InvalidUser> {
    let Some(nip) = nip.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if nip.len() != NIP_DIGITS || !nip.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid(
            "nip",
            format!("must be {NIP_DIGITS} digits (got `{nip}`)"),
        ));
    }
    Ok(Some(nip.to_owned()))
}

/// At least one role, each one of the office's, none twice.
pub fn check_roles(roles: &[String], office: &Roles) -> Result<(), InvalidUser> {
    if roles.is_empty() {
        return Err(invalid("roles", "must name at least one role".into()));
    }
    for (i, role) in roles.iter().enumerate() {
        if !office.contains(role) {
            return Err(invalid(
                "roles",
                format!(
                    "names unknown role `{role}` (expected one of: {})",
                    office.names().join(", ")
                ),
            ));
        }
        if roles.iter().take(i).any(|r| r == role) {
            return Err(invalid("roles", format!("lists `{role}` twice")));
        }
    }
    Ok(())
}

/// `["*"]`, or permit type ids (named as permit folders are; a type the active release does
/// not have yet is allowed, it may come in a later release), none twice.
pub fn check_permits(permits: &[String]) -> Result<(), InvalidUser> {
    if permits.len() > MAX_PERMITS {
        return Err(invalid(
            "permits",
            format!("names more than {MAX_PERMITS} permit types"),
        ));
    }
    if permits.iter().any(|p| p == ALL_PERMITS) {
        if permits.len() > 1 {
            return Err(invalid(
                "permits",
                "mixes `*` (every permit type) with permit type ids; `*` stands alone".into(),
            ));
        }
        return Ok(());
    }
    for (i, permit) in permits.iter().enumerate() {
        if !crate::release::valid_id(permit) {
            return Err(invalid(
                "permits",
                format!(
                    "names `{permit}`: a permit type id is lowercase letters, digits, `-` or `_`"
                ),
            ));
        }
        if permits.iter().take(i).any(|p| p == permit) {
            return Err(invalid("permits", format!("lists `{permit}` twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn usernames_are_short_lowercase_handles_and_not_other_actors() {
        for ok in ["siti", "budi.santoso", "fo_01", "kabid-pelayanan", "a"] {
            assert_eq!(check_username(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(MAX_USERNAME + 1);
        for bad in [
            "",
            "Siti",
            "budi santoso",
            "siti@dpmptsp",
            "ñ",
            long.as_str(),
        ] {
            let e = check_username(bad).unwrap_err();
            assert_eq!(e.field, "username", "{bad}");
            assert!(e.to_string().starts_with("`username` must be"), "{e}");
        }
        assert!(check_username(&"a".repeat(MAX_USERNAME)).is_ok());
        assert_eq!(
            check_username("cli").unwrap_err().to_string(),
            "`username` must not be `cli`: the audit log names another actor so"
        );
    }

    #[test]
    fn names_and_nips() {
        assert_eq!(check_name("  Siti Rahma ").unwrap(), "Siti Rahma");
        assert_eq!(check_name(" ").unwrap_err().field, "name");
        assert_eq!(check_name("a\nb").unwrap_err().field, "name");
        assert!(check_name(&"é".repeat(MAX_NAME)).is_ok());
        assert!(check_name(&"é".repeat(MAX_NAME + 1)).is_err());
        assert_eq!(check_nip(None).unwrap(), None);
        assert_eq!(check_nip(Some("")).unwrap(), None);
        assert_eq!(
            check_nip(Some("198503142010012003")).unwrap().as_deref(),
            Some("198503142010012003")
        );
        assert_eq!(
            check_nip(Some("1985-03")).unwrap_err().to_string(),
            "`nip` must be 18 digits (got `1985-03`)"
        );
    }

    #[test]
    fn roles_are_the_office_s_at_least_one_none_twice() {
        let office = Roles::default();
        assert!(check_roles(&strings(&["front_office", "admin"]), &office).is_ok());
        assert_eq!(
            check_roles(&[], &office).unwrap_err().to_string(),
            "`roles` must name at least one role"
        );
        let e = check_roles(&strings(&["kasir"]), &office).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`roles` names unknown role `kasir` (expected one of: admin,"),
            "{e}"
        );
        assert_eq!(
            check_roles(&strings(&["tim_teknis", "tim_teknis"]), &office)
                .unwrap_err()
                .to_string(),
            "`roles` lists `tim_teknis` twice"
        );
    }

    #[test]
    fn permits_are_all_or_permit_type_ids() {
        assert!(check_permits(&strings(&["*"])).is_ok());
        assert!(check_permits(&strings(&["pbg", "sip-dokter", "izin_2027"])).is_ok());
        // No permit type yet: the user handles none until an admin adds some.
        assert!(check_permits(&[]).is_ok());
        assert_eq!(
            check_permits(&strings(&["*", "pbg"]))
                .unwrap_err()
                .to_string(),
            "`permits` mixes `*` (every permit type) with permit type ids; `*` stands alone"
        );
        for bad in ["PBG", "pbg/x", "", "-pbg"] {
            assert_eq!(
                check_permits(&strings(&[bad])).unwrap_err().field,
                "permits",
                "{bad}"
            );
        }
        assert_eq!(
            check_permits(&strings(&["pbg", "pbg"]))
                .unwrap_err()
                .to_string(),
            "`permits` lists `pbg` twice"
        );
    }
}
