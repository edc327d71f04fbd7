//! Console sessions: a signed cookie naming who signed in (a registry
//! token, a single sign-on identity, or the one-time link of a loopback
//! `serve`), with an expiry and a per-session CSRF secret.
//!
//! The cookie holds no secret. For a token: its name and the first 16 hex
//! digits of its sha256 (so rotating a token under the same name ends its
//! sessions); for single sign-on: the subject, email and the groups that
//! the configuration maps to a role (the role is worked out again on every
//! request, so unmapping a group takes effect at once). Then the expiry and
//! a random nonce; all signed with HMAC-SHA256 under the server's session
//! key. A token's role and tenant are looked up on every request in the
//! tokens `serve` read at start, so a token removed from the file (or
//! replaced) signs its sessions out when `serve` restarts. Hand-written
//! rather than through a session crate: it is a few lines over `hmac`,
//! which the project already uses, and keeps the cookie stateless (any
//! replica with the same key accepts it) but for sign-outs, which the
//! state store keeps (see `console::signed_in_viewer`).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::registry::auth::{Token, Tokens};

/// The session cookie's name.
pub const COOKIE: &str = "mc_session";
/// How long a sign-in lasts.
pub const TTL_SECONDS: i64 = 8 * 3600;
/// The environment variable holding the session key shared by replicas.
pub const KEY_ENV: &str = "MISSIONCTL_CONSOLE_KEY";

type HmacSha256 = Hmac<Sha256>;

/// The key sessions and CSRF tokens are signed with.
#[derive(Clone)]
pub struct Keys {
    key: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// Who a session stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Who {
    /// A registry token (by name and the start of its hash).
    Token { name: String, hash16: String },
    /// A single sign-on identity: the ID token's subject and email, and the
    /// groups of its groups claim that the configuration maps.
    Sso {
        subject: String,
        email: Option<String>,
        groups: Vec<String>,
    },
    /// The one-time login link a loopback `serve` printed (personal tier).
    Link,
}

/// A signed-in session, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(flatten)]
    pub who: Who,
    pub expires: i64,
    pub nonce: String,
}

impl Keys {
    /// The key from `MISSIONCTL_CONSOLE_KEY` (at least 32 bytes, so replicas
    /// behind one address accept each other's sessions), or a random one
    /// (sessions end when this process does).
    pub fn from_env() -> Result<Keys, String> {
        match std::env::var(KEY_ENV) {
            Ok(k) if k.len() >= 32 => Ok(Keys {
                key: k.into_bytes(),
            }),
            Ok(_) => Err(format!(
                "{KEY_ENV} is shorter than 32 bytes; set it to a long random secret (e.g. `openssl rand -hex 32`), or unset it for a key that lasts as long as this process"
            )),
            Err(_) => Ok(Keys::random()),
        }
    }

    pub fn random() -> Keys {
        let k: [u8; 32] = rand::random();
        Keys { key: k.to_vec() }
    }

    fn mac(&self, what: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        m.update(what);
        m
    }

    /// `payload` with its signature under this key, for `purpose` (a
    /// value signed for one purpose is never accepted for another).
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> String {
        let mut m = self.mac(purpose.as_bytes());
        m.update(b"|");
        m.update(payload);
        format!(
            "{}.{}",
            hex::encode(payload),
            hex::encode(m.finalize().into_bytes())
        )
    }

    /// The payload of a value [`Keys::seal`] made for `purpose`, if the
    /// signature is ours.
    pub fn open(&self, purpose: &str, value: &str) -> Option<Vec<u8>> {
        let (payload, sig) = value.split_once('.')?;
        let payload = hex::decode(payload).ok()?;
        let sig = hex::decode(sig).ok()?;
        let mut m = self.mac(purpose.as_bytes());
        m.update(b"|");
        m.update(&payload);
        m.verify_slice(&sig).ok()?;
        Some(payload)
    }

    /// A new session for `token` signed in now (`now`: unix seconds).
    pub fn issue(&self, token: &Token, tokens: &Tokens, now: i64) -> Option<String> {
        let hash16 = tokens.hash_of(&token.name)?.get(..16)?.to_string();
        Some(self.issue_for(
            Who::Token {
                name: token.name.clone(),
                hash16,
            },
            now,
        ))
    }

    /// A new session for `who` signed in now (`now`: unix seconds).
    pub fn issue_for(&self, who: Who, now: i64) -> String {
        let s = Session {
            who,
            expires: now + TTL_SECONDS,
            nonce: hex::encode(rand::random::<[u8; 16]>()),
        };
        let payload = serde_json::to_vec(&s).expect("a session serialises");
        self.seal("session", &payload)
    }

    /// The session a cookie value holds, if its signature is ours and it has
    /// not expired at `now`.
    pub fn check(&self, value: &str, now: i64) -> Option<Session> {
        let payload = self.open("session", value)?;
        let s: Session = serde_json::from_slice(&payload).ok()?;
        (s.expires > now).then_some(s)
    }

    /// The CSRF token of `session`: forms carry it, state changes check it.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(
            self.mac(format!("csrf|{}", session.nonce).as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `given` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_ok(&self, session: &Session, given: &str) -> bool {
        let Ok(given) = hex::decode(given) else {
            return false;
        };
        self.mac(format!("csrf|{}", session.nonce).as_bytes())
            .verify_slice(&given)
            .is_ok()
    }
}

/// The token a session stands for, as the tokens file has it now: gone, or
/// replaced under the same name, ends the session.
pub fn token_of(session: &Session, tokens: &Tokens) -> Option<Token> {
    let Who::Token { name, hash16 } = &session.who else {
        return None;
    };
    let hash = tokens.hash_of(name)?;
    if !hash.starts_with(hash16.as_str()) {
        return None;
    }
    tokens.by_name(name).cloned()
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (Tokens, Token) {
        let file = crate::registry::auth::file_with(&crate::registry::auth::entry(
            "acme-viewer",
            "viewer",
            Some("acme"),
            "secret-1",
        ));
        let t = Tokens::parse("tokens.yaml", &file).expect("tokens");
        let tok = t.check(Some("Bearer secret-1")).cloned().expect("token");
        (t, tok)
    }

    #[test]
    fn a_session_is_signed_expires_and_ends_with_its_token() {
        let keys = Keys::random();
        let (tokens, tok) = tokens();
        let c = keys.issue(&tok, &tokens, 1_000).expect("issued");
        let s = keys.check(&c, 1_001).expect("valid");
        assert!(
            matches!(&s.who, Who::Token { name, .. } if name == "acme-viewer"),
            "{s:?}"
        );
        assert_eq!(token_of(&s, &tokens), Some(tok.clone()));
        // Expired, signed by another key, or tampered with: refused.
        assert_eq!(keys.check(&c, 1_000 + TTL_SECONDS), None);
        assert_eq!(Keys::random().check(&c, 1_001), None);
        let (payload, sig) = c.split_once('.').expect("dot");
        let forged = hex::encode(
            String::from_utf8(hex::decode(payload).expect("hex"))
                .expect("utf-8")
                .replace("acme-viewer", "admin"),
        );
        assert_eq!(keys.check(&format!("{forged}.{sig}"), 1_001), None);
        // A value signed for another purpose is not a session.
        let other = keys.seal("sso-login", &hex::decode(payload).expect("hex"));
        assert_eq!(keys.check(&other, 1_001), None);
        assert_eq!(keys.check("garbage", 1_001), None);
        // The same name with another token (rotated): the session ends.
        let rotated = Tokens::parse(
            "tokens.yaml",
            &crate::registry::auth::file_with(&crate::registry::auth::entry(
                "acme-viewer",
                "viewer",
                Some("acme"),
                "secret-2",
            )),
        )
        .expect("tokens");
        assert_eq!(token_of(&s, &rotated), None);
        // CSRF tokens are per session.
        let csrf = keys.csrf(&s);
        assert!(keys.csrf_ok(&s, &csrf));
        let other = keys
            .check(&keys.issue(&tok, &tokens, 1_000).expect("c"), 1_001)
            .expect("s");
        assert!(!keys.csrf_ok(&other, &csrf));
        assert!(!keys.csrf_ok(&s, "zz"));
        assert_eq!(cookie("a=1; mc_session=xyz; b=2", COOKIE), Some("xyz"));
    }
}
