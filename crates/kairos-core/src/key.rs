//! Job keys and job-name rules (spec §6 scoping, §7.8 names).
//!
//! A job is identified by `(namespace, owner, name)`. The owner is the app that scheduled it
//! (Dapr's `TargetJob`) or an actor (`TargetActorReminder`: type and id). Two apps may use the
//! same name without seeing each other's jobs.

use std::fmt;

/// The longest job name kairos accepts, in Unicode characters.
///
/// Upstream (go-etcd-cron ≥ v0.12.6) bounds the length but the exact bound is not published;
/// its tests reject 600 characters. 256 keeps every DNS-1123 name (≤ 253) valid, so no name
/// that older runtimes accepted is refused here.
pub const MAX_NAME_CHARS: usize = 256;

/// Who a job belongs to and who receives its triggers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A job scheduled by an app through its sidecar (`JobTargetMetadata.job`).
    App { app_id: String },
    /// An actor reminder (`JobTargetMetadata.actor`).
    Actor { actor_type: String, actor_id: String },
}

impl Owner {
    /// An app owner.
    pub fn app(app_id: impl Into<String>) -> Self {
        Owner::App { app_id: app_id.into() }
    }

    /// An actor owner.
    pub fn actor(actor_type: impl Into<String>, actor_id: impl Into<String>) -> Self {
        Owner::Actor { actor_type: actor_type.into(), actor_id: actor_id.into() }
    }
}

/// The identity of a stored job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub namespace: String,
    pub owner: Owner,
    pub name: String,
}

impl JobKey {
    /// A key owned by an app.
    pub fn app(namespace: impl Into<String>, app_id: impl Into<String>, name: impl Into<String>) -> Self {
        JobKey { namespace: namespace.into(), owner: Owner::app(app_id), name: name.into() }
    }
}

/// Where a job's triggers go: the jobs of one app, or the reminders of one actor type, in one
/// namespace. Every sidecar serving the route may receive them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// Jobs of one app.
    App { namespace: String, app_id: String },
    /// Reminders of one actor type.
    Actor { namespace: String, actor_type: String },
}

impl Route {
    /// The route of a job.
    pub fn of(key: &JobKey) -> Route {
        match &key.owner {
            Owner::App { app_id } => Route::App { namespace: key.namespace.clone(), app_id: app_id.clone() },
            Owner::Actor { actor_type, .. } => {
                Route::Actor { namespace: key.namespace.clone(), actor_type: actor_type.clone() }
            }
        }
    }

    /// Whether `key`'s triggers take this route (without building the key's route).
    pub fn serves(&self, key: &JobKey) -> bool {
        match (self, &key.owner) {
            (Route::App { namespace, app_id }, Owner::App { app_id: a }) => {
                *namespace == key.namespace && app_id == a
            }
            (Route::Actor { namespace, actor_type }, Owner::Actor { actor_type: t, .. }) => {
                *namespace == key.namespace && actor_type == t
            }
            _ => false,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::App { namespace, app_id } => write!(f, "app||{namespace}||{app_id}"),
            Route::Actor { namespace, actor_type } => write!(f, "actorreminder||{namespace}||{actor_type}"),
        }
    }
}

/// Renders the key the way upstream renders it in `AlreadyExists` messages:
/// `app||<namespace>||<appID>||<name>` or `actorreminder||<namespace>||<type>||<id>||<name>`.
impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Owner::App { app_id } => {
                write!(f, "app||{}||{}||{}", self.namespace, app_id, self.name)
            }
            Owner::Actor { actor_type, actor_id } => {
                write!(f, "actorreminder||{}||{}||{}||{}", self.namespace, actor_type, actor_id, self.name)
            }
        }
    }
}

/// Why a job name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("job name cannot be empty")]
    Empty,
    #[error("job name is invalid {name:?}: must be at most {MAX_NAME_CHARS} characters, found {len}")]
    TooLong { name: String, len: usize },
    #[error("job name is invalid {name:?}: must not contain {found:?}")]
    ForbiddenCharacter { name: String, found: char },
    #[error("job name is invalid {name:?}: must not be \".\" or \"..\"")]
    DotName { name: String },
}

/// Validates a job name by the current upstream rule (spec §7.8, runtime ≥ v1.18.3).
///
/// Any character is allowed except `/`, `\`, `#`, `?` and control characters (0x00–0x1F,
/// 0x7F); the names `.` and `..` are refused; at most [`MAX_NAME_CHARS`] characters.
/// `|`, `||` and `@` are allowed.
///
/// # Errors
/// [`NameError`] naming the rule that failed.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(found) = name.chars().find(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_ascii_control()) {
        return Err(NameError::ForbiddenCharacter { name: name.to_owned(), found });
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName { name: name.to_owned() });
    }
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(NameError::TooLong { name: name.to_owned(), len });
    }
    Ok(())
}

/// Validates a prefix given to delete-by-prefix: upstream validates `prefix + "a"` as a name,
/// so an empty prefix (meaning "all jobs of the owner") is valid.
///
/// # Errors
/// [`NameError`] when `prefix + "a"` is not a valid name.
pub fn validate_name_prefix(prefix: &str) -> Result<(), NameError> {
    validate_name(&format!("{prefix}a"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // spec §7.8 (v1.18.3 / master rule)
    #[test]
    fn spec_7_8_accepts_names_upstream_accepts() {
        for name in [
            "a",
            "my-job",
            "my||job@name",
            "my|job",
            "UPPER_case",
            "with space",
            "dots.in.name",
            "...",
            ".hidden",
            "ünïcödé-名前",
            "emoji🙂",
            "prod-db-backup",
            "%2F",
            "a:b;c=d&e",
        ] {
            assert_eq!(validate_name(name), Ok(()), "name {name:?}");
        }
        assert_eq!(validate_name(&"x".repeat(253)), Ok(()));
        assert_eq!(validate_name(&"x".repeat(MAX_NAME_CHARS)), Ok(()));
        assert_eq!(validate_name(&"é".repeat(MAX_NAME_CHARS)), Ok(()), "the bound counts characters");
    }

    #[test]
    fn spec_7_8_rejects_forbidden_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        for (name, found) in [
            ("a/b", '/'),
            ("a\\b", '\\'),
            ("a#b", '#'),
            ("a?b", '?'),
            ("a\nb", '\n'),
            ("a\0b", '\0'),
            ("a\tb", '\t'),
            ("a\u{7f}b", '\u{7f}'),
            ("a\u{1f}", '\u{1f}'),
        ] {
            assert_eq!(
                validate_name(name),
                Err(NameError::ForbiddenCharacter { name: name.into(), found }),
                "name {name:?}"
            );
        }
        assert!(matches!(validate_name("."), Err(NameError::DotName { .. })));
        assert!(matches!(validate_name(".."), Err(NameError::DotName { .. })));
        // upstream's test: a 600-character name is rejected
        assert_eq!(
            validate_name(&"a".repeat(600)),
            Err(NameError::TooLong { name: "a".repeat(600), len: 600 })
        );
        assert!(validate_name(&"a".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn spec_7_8_prefix_is_validated_with_a_trailing_letter() {
        assert_eq!(validate_name_prefix(""), Ok(()));
        assert_eq!(validate_name_prefix("."), Ok(()), "\".a\" is a valid name");
        assert!(validate_name_prefix("a/").is_err());
    }

    #[test]
    fn key_renders_like_upstream_internal_key() {
        assert_eq!(JobKey::app("default", "myapp", "my||job").to_string(), "app||default||myapp||my||job");
        let actor = JobKey { namespace: "ns".into(), owner: Owner::actor("T", "1"), name: "r".into() };
        assert_eq!(actor.to_string(), "actorreminder||ns||T||1||r");
    }

    proptest! {
        #[test]
        fn validate_never_panics(s in "\\PC*") {
            let _ = validate_name(&s);
        }

        #[test]
        fn names_without_forbidden_chars_are_valid(s in "[a-zA-Z0-9|@ ._:-]{1,200}") {
            prop_assume!(s != "." && s != "..");
            prop_assert_eq!(validate_name(&s), Ok(()));
        }
    }
}
