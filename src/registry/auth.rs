//! Bearer tokens for the registry, each with a role and a tenant scope.
//! Only sha256 digests of tokens are configured, so the file holds no secret;
//! the token itself never appears in logs or the audit log (its name does).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::diagnostic::{self, Diagnostic};
use crate::pack::parse_checked;
use crate::schema::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Harness,
    Viewer,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// `None`: every tenant.
    pub tenant: Option<String>,
}

impl Token {
    pub fn may(&self, action: Action) -> bool {
        matches!(
            (self.role, action),
            (Role::Admin, _)
                | (Role::Harness, Action::Resolve | Action::WriteRuns)
                | (Role::Viewer, Action::Resolve | Action::Read)
        )
    }

    /// Whether this token may act in `scope`.
    pub(crate) fn covers(&self, scope: Scope<'_>) -> bool {
        match (&self.tenant, scope) {
            (_, Scope::Any) | (None, _) => true,
            (Some(mine), Scope::Tenant(t)) => mine == t,
            (Some(_), Scope::Shared) => false,
        }
    }
}

/// What a request touches, for the tenant check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Nothing tenant-specific up front (the handler filters what it returns).
    Any,
    /// One tenant's data (`acme`, or `user:sam` for a personal user).
    Tenant(&'a str),
    /// Shared content that affects every tenant: unscoped tokens only.
    Shared,
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Any => f.write_str("any scope"),
            Scope::Tenant(t) => f.write_str(t),
            Scope::Shared => f.write_str("the shared scope (every tenant)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Resolve,
    WriteRuns,
    Read,
    Rollback,
}

/// Whether `name` is a token name the tokens file accepts
/// (`schema/tokens.schema.json`: letters, digits, `.`, `_`, `-`, 1 to 64).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `tenant` is a tenant a token may be limited to: a tenant id, or
/// `user:<id>` for a personal user (the same characters as a name), so the
/// entry holds exactly the tenant asked for.
pub fn valid_tenant(tenant: &str) -> bool {
    valid_name(tenant.strip_prefix("user:").unwrap_or(tenant))
}

/// The tokens-file entry for `token` (only its hash is written).
pub fn entry(name: &str, role: &str, tenant: Option<&str>, token: &str) -> String {
    format!(
        "  - name: {name}\n    sha256: {}\n    role: {role}{}\n",
        hash(token),
        tenant
            .map(|t| format!("\n    tenant: {t}"))
            .unwrap_or_default()
    )
}

/// A complete tokens file holding one entry.
pub fn file_with(entry: &str) -> String {
    format!("tokens:\n{entry}")
}

/// Append `entry` (from [`entry`], for the token named `name`) to the
/// tokens file at `path`, creating it with its `tokens:` key when it does
/// not exist or is empty. The file is checked before and after (a file
/// that would not load is never written) and replaced atomically.
pub fn append(path: &std::path::Path, name: &str, entry: &str) -> Result<(), AuthError> {
    let shown = path.display().to_string();
    let existing = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        _ => read_file(path)?,
    };
    let text = if existing.trim().is_empty() {
        // A new file is checked as an appended one is: it must load.
        let text = file_with(entry);
        if names(&shown, &text)? != [name] {
            return Err(AuthError::Layout {
                path: shown,
                entry: entry.to_string(),
            });
        }
        text
    } else {
        let names = names(&shown, &existing)?;
        if names.iter().any(|n| n == name) {
            return Err(AuthError::Duplicate {
                path: shown,
                name: name.to_string(),
            });
        }
        let mut base = existing.clone();
        if !base.ends_with('\n') {
            base.push('\n');
        }
        // The entry as printed (indented two spaces), or flush left for a
        // file whose list items are written that way.
        let candidates = [
            format!("{base}{entry}"),
            format!(
                "{base}{}",
                entry
                    .lines()
                    .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
                    .collect::<String>()
            ),
        ];
        candidates
            .into_iter()
            .find(|t| names_of(&shown, t).is_some_and(|n| n.len() == names.len() + 1))
            .ok_or_else(|| AuthError::Layout {
                path: shown.clone(),
                entry: entry.to_string(),
            })?
    };
    let write_err = |e: std::io::Error| AuthError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

/// The most a tokens file may hold.
const TOKENS_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// A tokens file's text: a regular file (a FIFO would block the reader, a
/// directory is no file), at most [`TOKENS_FILE_LIMIT`] bytes.
fn read_file(path: &std::path::Path) -> Result<String, AuthError> {
    let err = |message: String| AuthError::Read {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err(
            "is not a regular file (a directory or a FIFO?); a tokens file is a YAML file".into(),
        ));
    }
    if meta.len() > TOKENS_FILE_LIMIT {
        return Err(err(format!("is over {TOKENS_FILE_LIMIT} bytes")));
    }
    std::fs::read_to_string(path).map_err(|e| err(e.to_string()))
}

/// The names of the tokens in a tokens file, or why it does not load.
fn names(file: &str, text: &str) -> Result<Vec<String>, AuthError> {
    let mut diags = Vec::new();
    match parse_checked(Kind::Tokens, file, text, &mut diags) {
        Some((_, json)) if !diags.iter().any(Diagnostic::is_error) => Ok(json["tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect()),
        _ => Err(AuthError::Invalid {
            path: file.to_string(),
            diags,
        }),
    }
}

fn names_of(file: &str, text: &str) -> Option<Vec<String>> {
    names(file, text).ok()
}

#[derive(Debug, Default, Clone)]
pub struct Tokens {
    by_hash: HashMap<String, Token>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the token file {path}: {message}")]
    Read { path: String, message: String },
    #[error("the token file {path} is invalid:\n{}", diagnostic::render::human(.diags, &diagnostic::render::NoSources, false))]
    Invalid {
        path: String,
        diags: Vec<Diagnostic>,
    },
    #[error(
        "the token file {path} already has a token named `{name}`: pass another --name, or remove the old entry from {path} first"
    )]
    Duplicate { path: String, name: String },
    #[error(
        "cannot append to the token file {path}: its `tokens:` list is not the last thing in the file (or is written inline); \
         add the entry by hand under `tokens:`:\n{entry}"
    )]
    Layout { path: String, entry: String },
    #[error("cannot write the token file {path}: {message}")]
    Write { path: String, message: String },
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Tokens {
    pub fn load(path: &std::path::Path) -> Result<Tokens, AuthError> {
        let shown = path.display().to_string();
        let text = read_file(path)?;
        Self::parse(&shown, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Tokens, AuthError> {
        let mut diags = Vec::new();
        let Some((_, json)) = parse_checked(Kind::Tokens, file, text, &mut diags) else {
            return Err(AuthError::Invalid {
                path: file.to_string(),
                diags,
            });
        };
        let mut by_hash = HashMap::new();
        for t in json["tokens"].as_array().into_iter().flatten() {
            let role = match t["role"].as_str() {
                Some("admin") => Role::Admin,
                Some("viewer") => Role::Viewer,
                _ => Role::Harness,
            };
            by_hash.insert(
                t["sha256"].as_str().unwrap_or_default().to_string(),
                Token {
                    name: t["name"].as_str().unwrap_or_default().to_string(),
                    role,
                    tenant: t["tenant"].as_str().map(String::from),
                },
            );
        }
        Ok(Tokens { by_hash })
    }

    /// The token behind an `Authorization: Bearer …` header.
    pub fn check(&self, header: Option<&str>) -> Option<&Token> {
        let token = header?.strip_prefix("Bearer ")?.trim();
        self.by_hash.get(&hash(token))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The sha256 of the token named `name` (as the tokens file holds it).
    pub fn hash_of(&self, name: &str) -> Option<&str> {
        self.by_hash
            .iter()
            .find(|(_, t)| t.name == name)
            .map(|(h, _)| h.as_str())
    }

    /// The token named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Token> {
        self.by_hash.values().find(|t| t.name == name)
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
}

/// A new random token (32 bytes, hex).
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("mct_{}", hex::encode(bytes))
}
