//! Console sessions: a signed cookie naming the registry token a person
//! signed in with, with an expiry and a per-session CSRF secret.
//!
//! The cookie holds no secret: the token's name, the first 16 hex digits
//! of its sha256 (so rotating a token under the same name ends its
//! sessions), the expiry, and a random nonce, signed with HMAC-SHA256
//! under the server's session key. The role and tenant are read from the
//! tokens file on every request, so removing a token signs its sessions
//! out. Hand-written rather than through a session crate: it is a few
//! lines over `hmac`, which the project already uses, and keeps the
//! cookie stateless (any replica with the same key accepts it).

use hmac::{Hmac, Mac};
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

/// A signed-in session, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_name: String,
    pub hash16: String,
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

    /// A new session for `token` signed in now (`now`: unix seconds).
    pub fn issue(&self, token: &Token, tokens: &Tokens, now: i64) -> Option<String> {
        let hash16 = tokens.hash_of(&token.name)?.get(..16)?.to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let payload = format!("{}|{hash16}|{}|{nonce}", token.name, now + TTL_SECONDS);
        let sig = hex::encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        Some(format!("{}.{sig}", hex::encode(payload)))
    }

    /// The session a cookie value holds, if its signature is ours and it has
    /// not expired at `now`.
    pub fn check(&self, value: &str, now: i64) -> Option<Session> {
        let (payload, sig) = value.split_once('.')?;
        let payload = hex::decode(payload).ok()?;
        let sig = hex::decode(sig).ok()?;
        self.mac(&payload).verify_slice(&sig).ok()?;
        let text = String::from_utf8(payload).ok()?;
        let mut parts = text.split('|');
        let s = Session {
            token_name: parts.next()?.to_string(),
            hash16: parts.next()?.to_string(),
            expires: parts.next()?.parse().ok()?,
            nonce: parts.next()?.to_string(),
        };
        (parts.next().is_none() && s.expires > now).then_some(s)
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
    let hash = tokens.hash_of(&session.token_name)?;
    if !hash.starts_with(&session.hash16) {
        return None;
    }
    tokens.by_name(&session.token_name).cloned()
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
        assert_eq!(s.token_name, "acme-viewer");
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
