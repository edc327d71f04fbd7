//! OpenID Connect single sign-on for the console: the authorization code
//! flow with PKCE (S256), state and nonce, through the `openidconnect`
//! crate over the project's own reqwest client (redirects off).
//!
//! Configured by a YAML file given to `serve --console-sso` (see
//! [`SsoFile`]): the issuer, the client id, the name of the environment
//! variable holding the client secret (the secret itself is never in the
//! file, never printed), the console's callback URL, and which groups of
//! the groups claim are which role: `viewer` or `admin`, of one tenant or
//! (no `tenant`) of the whole fleet.
//!
//! The provider's metadata and signing keys are read when a sign-in
//! starts and again when it finishes, so a provider that rotates its keys
//! or was down when `serve` started needs no restart.

use std::collections::BTreeMap;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, RedirectUrl, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use openidconnect::{LogoutRequest, ProviderMetadataWithLogout};
use serde::{Deserialize, Serialize};

use crate::registry::auth::Role;

/// The SSO configuration file (`serve --console-sso FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoFile {
    /// The provider's issuer URL (its discovery document is
    /// `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret.
    pub client_secret_env: String,
    /// The console's callback as the provider knows it:
    /// `https://<console>/ui/auth/callback`.
    pub redirect_url: String,
    /// The ID token claim listing the person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Which group is which role.
    pub roles: Vec<RoleMapping>,
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// One group's role: in one tenant, or (no tenant) across the fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    pub group: String,
    pub role: MappedRole,
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MappedRole {
    Viewer,
    Admin,
}

impl MappedRole {
    fn role(self) -> Role {
        match self {
            MappedRole::Viewer => Role::Viewer,
            MappedRole::Admin => Role::Admin,
        }
    }
    fn name(self) -> &'static str {
        match self {
            MappedRole::Viewer => "viewer",
            MappedRole::Admin => "admin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("cannot read the console SSO configuration {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the console SSO configuration {path} is not valid: {msg}")]
    Invalid { path: String, msg: String },
    #[error(
        "the console SSO configuration {path} names client_secret_env `{var}`, which is not set (or empty): export it with the client secret the provider issued"
    )]
    Secret { path: String, var: String },
}

/// The single sign-on client, ready to start and finish sign-ins.
pub struct Sso {
    pub file: SsoFile,
    secret: ClientSecret,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: reqwest::Client,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("issuer", &self.file.issuer)
            .field("client_id", &self.file.client_id)
            .field("secret", &"***")
            .finish()
    }
}

/// The groups claim (any name), with the standard claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtraClaims(BTreeMap<String, serde_json::Value>);
impl AdditionalClaims for ExtraClaims {}

type IdFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResp = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient<A, T> = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResp,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    A,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    T,
    openidconnect::EndpointMaybeSet,
>;

/// A sign-in under way: kept (signed) in a cookie between the redirect to
/// the provider and the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub expires: i64,
}

/// A verified identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    /// Every group of the groups claim.
    pub groups: Vec<String>,
}

/// What the groups grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// One role in one tenant (`Some`) or across the fleet (`None`).
    Role(Role, Option<String>),
    /// No group is mapped.
    Nothing,
    /// Roles in several scopes the console cannot show at once (named).
    Several(Vec<String>),
}

impl Sso {
    /// Read and check the configuration at `path`, and the client secret
    /// from the environment variable it names.
    pub fn load(path: &std::path::Path) -> Result<Sso, SsoError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SsoError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: SsoFile = serde_saphyr::from_str(&text).map_err(|e| SsoError::Invalid {
            path: shown.clone(),
            msg: e.to_string(),
        })?;
        let secret = std::env::var(&file.client_secret_env)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SsoError::Secret {
                path: shown.clone(),
                var: file.client_secret_env.clone(),
            })?;
        Sso::new(&shown, file, secret)
    }

    pub fn new(shown: &str, file: SsoFile, secret: String) -> Result<Sso, SsoError> {
        let invalid = |msg: String| SsoError::Invalid {
            path: shown.to_string(),
            msg,
        };
        let issuer = IssuerUrl::new(file.issuer.clone())
            .map_err(|e| invalid(format!("issuer `{}` is not a URL ({e})", file.issuer)))?;
        let redirect = RedirectUrl::new(file.redirect_url.clone()).map_err(|e| {
            invalid(format!(
                "redirect_url `{}` is not a URL ({e})",
                file.redirect_url
            ))
        })?;
        if !redirect.url().path().ends_with("/ui/auth/callback") {
            return Err(invalid(format!(
                "redirect_url `{}` must be the console's callback, ending in /ui/auth/callback",
                file.redirect_url
            )));
        }
        if file.roles.is_empty() {
            return Err(invalid(
                "roles is empty: map at least one group to viewer or admin (with a tenant, or none for the whole fleet)".into(),
            ));
        }
        for m in &file.roles {
            if m.group.trim().is_empty() || m.tenant.as_deref().is_some_and(|t| t.trim().is_empty())
            {
                return Err(invalid(
                    "a roles entry has an empty group or tenant: name both, or leave tenant out for the whole fleet".into(),
                ));
            }
        }
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answers steer requests (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Sso {
            file,
            secret: ClientSecret::new(secret),
            issuer,
            redirect,
            http,
        })
    }

    /// What `groups` grant under the configured roles: the strongest role
    /// of one scope. A fleet-wide admin covers everything; a fleet-wide
    /// viewer covers tenant viewers; roles left in more than one scope are
    /// refused (a sign-in shows one tenant, or all).
    pub fn grant(&self, groups: &[String]) -> Grant {
        let matched: Vec<&RoleMapping> = self
            .file
            .roles
            .iter()
            .filter(|m| groups.contains(&m.group))
            .collect();
        if matched.is_empty() {
            return Grant::Nothing;
        }
        let fleet = matched
            .iter()
            .filter(|m| m.tenant.is_none())
            .map(|m| m.role)
            .max();
        if fleet == Some(MappedRole::Admin) {
            return Grant::Role(Role::Admin, None);
        }
        let mut tenants: BTreeMap<&str, MappedRole> = BTreeMap::new();
        for m in &matched {
            if let Some(t) = &m.tenant {
                let r = tenants.entry(t).or_insert(m.role);
                *r = (*r).max(m.role);
            }
        }
        if fleet.is_some() {
            tenants.retain(|_, r| *r > MappedRole::Viewer);
        }
        match (fleet, tenants.len()) {
            (Some(r), 0) => Grant::Role(r.role(), None),
            (None, 1) => {
                let (t, r) = tenants.into_iter().next().expect("one");
                Grant::Role(r.role(), Some(t.to_string()))
            }
            _ => Grant::Several(
                fleet
                    .map(|r| format!("{} of every tenant", r.name()))
                    .into_iter()
                    .chain(
                        tenants
                            .iter()
                            .map(|(t, r)| format!("{} of tenant {t}", r.name())),
                    )
                    .collect(),
            ),
        }
    }

    /// The groups of `groups` that some role mapping names (what a session
    /// keeps).
    pub fn mapped(&self, groups: &[String]) -> Vec<String> {
        let mut out: Vec<String> = groups
            .iter()
            .filter(|g| self.file.roles.iter().any(|m| m.group == **g))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The provider's discovery document (with its RP-initiated logout
    /// endpoint, when it has one).
    async fn discover(&self) -> Result<ProviderMetadataWithLogout, String> {
        let http = self.http.clone();
        ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &move |r| {
            send(http.clone(), r)
        })
        .await
        .map_err(|e| {
            format!(
                "cannot read the OpenID configuration of {}: {}",
                self.file.issuer,
                chain(&e)
            )
        })
    }

    /// Where a person signed out of the console signs out at the provider
    /// too (OpenID Connect RP-Initiated Logout 1.0): its
    /// `end_session_endpoint` with this client's id and, as
    /// `post_logout_redirect_uri`, the console's sign-in page (the callback
    /// URL's origin + `/ui/login`, which the provider must list for the
    /// client). None when the provider publishes no such endpoint.
    pub async fn logout_url(&self) -> Result<Option<String>, String> {
        let meta = self.discover().await?;
        let Some(end) = meta.additional_metadata().end_session_endpoint.clone() else {
            return Ok(None);
        };
        let mut back = self.redirect.url().clone();
        back.set_path("/ui/login");
        back.set_query(None);
        back.set_fragment(None);
        let req = LogoutRequest::from(end)
            .set_client_id(ClientId::new(self.file.client_id.clone()))
            .set_post_logout_redirect_uri(PostLogoutRedirectUrl::from_url(back));
        Ok(Some(req.http_get_url().to_string()))
    }

    async fn client(
        &self,
    ) -> Result<OidcClient<openidconnect::EndpointSet, openidconnect::EndpointMaybeSet>, String>
    {
        let meta = self.discover().await?;
        Ok(OidcClient::from_provider_metadata(
            meta,
            ClientId::new(self.file.client_id.clone()),
            Some(self.secret.clone()),
        )
        .set_redirect_uri(self.redirect.clone()))
    }

    /// Start a sign-in: where to send the browser, and what to keep for
    /// the callback (valid for `ttl` seconds from `now`).
    pub async fn start(&self, now: i64, ttl: i64) -> Result<(String, Pending), String> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new(self.file.groups_claim.clone()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            Pending {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                expires: now + ttl,
            },
        ))
    }

    /// Finish a sign-in: exchange `code` (with the PKCE verifier) and
    /// verify the ID token: signature against the provider's published
    /// keys, issuer, audience, expiry, nonce, and the access token's hash.
    pub async fn finish(&self, pending: &Pending, code: &str) -> Result<Identity, String> {
        let client = self.client().await?;
        let http = self.http.clone();
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| format!("the provider has no token endpoint: {e}"))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&move |r| send(http.clone(), r))
            .await
            .map_err(|e| format!("the code exchange failed: {}", chain(&e)))?;
        let id_token = token
            .id_token()
            .ok_or("the provider answered without an ID token")?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| format!("the ID token did not verify: {}", chain(&e)))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| format!("the ID token did not verify: {e}"))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| format!("the ID token did not verify: {e}"))?;
            let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                .map_err(|e| format!("the ID token did not verify: {e}"))?;
            if actual != *expected {
                return Err(
                    "the ID token did not verify: its at_hash does not match the access token"
                        .into(),
                );
            }
        }
        let groups = match claims.additional_claims().0.get(&self.file.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            groups,
        })
    }
}

/// An error with its causes, one after another.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// One request of the OpenID client through reqwest (0.13).
async fn send(
    http: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let resp = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = openidconnect::http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    let body = resp.bytes().await?;
    Ok(out
        .body(body.to_vec())
        .expect("a status and headers taken from a response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sso(roles: &str) -> Sso {
        let yaml = format!(
            "issuer: http://127.0.0.1:1\nclient_id: c\nclient_secret_env: X\nredirect_url: http://127.0.0.1:2/ui/auth/callback\nroles:\n{roles}"
        );
        let file: SsoFile = serde_saphyr::from_str(&yaml).expect("yaml");
        Sso::new("sso.yaml", file, "s".into()).expect("sso")
    }

    fn g(names: &[&str]) -> Vec<String> {
        names.iter().map(std::string::ToString::to_string).collect()
    }

    #[test]
    fn groups_map_to_one_scope_or_are_refused() {
        let s = sso(
            "  - {group: acme-admins, role: admin, tenant: acme}\n  - {group: acme-viewers, role: viewer, tenant: acme}\n  - {group: globex-viewers, role: viewer, tenant: globex}\n  - {group: ops, role: admin}\n  - {group: auditors, role: viewer}\n",
        );
        assert_eq!(
            s.grant(&g(&["acme-admins", "x"])),
            Grant::Role(Role::Admin, Some("acme".into()))
        );
        assert_eq!(
            s.grant(&g(&["acme-viewers", "acme-admins"])),
            Grant::Role(Role::Admin, Some("acme".into()))
        );
        assert_eq!(s.grant(&g(&["x", "y"])), Grant::Nothing);
        assert_eq!(s.grant(&g(&[])), Grant::Nothing);
        assert_eq!(
            s.grant(&g(&["ops", "globex-viewers"])),
            Grant::Role(Role::Admin, None)
        );
        assert_eq!(
            s.grant(&g(&["auditors", "globex-viewers"])),
            Grant::Role(Role::Viewer, None)
        );
        assert_eq!(
            s.grant(&g(&["acme-admins", "globex-viewers"])),
            Grant::Several(g(&["admin of tenant acme", "viewer of tenant globex"]))
        );
        assert_eq!(
            s.grant(&g(&["auditors", "acme-admins"])),
            Grant::Several(g(&["viewer of every tenant", "admin of tenant acme"]))
        );
        assert_eq!(
            s.mapped(&g(&["x", "ops", "acme-admins", "ops"])),
            g(&["acme-admins", "ops"])
        );
    }

    #[test]
    fn a_bad_configuration_names_the_field_and_the_fix() {
        let bad = |yaml: &str| {
            let file: SsoFile = serde_saphyr::from_str(yaml).expect("yaml");
            Sso::new("sso.yaml", file, "s".into())
                .expect_err("refused")
                .to_string()
        };
        let base = "issuer: http://127.0.0.1:1\nclient_id: c\nclient_secret_env: X\n";
        let e = bad(&format!(
            "{base}redirect_url: http://127.0.0.1:2/elsewhere\nroles: [{{group: a, role: admin}}]\n"
        ));
        assert!(
            e.contains("sso.yaml") && e.contains("/ui/auth/callback"),
            "{e}"
        );
        let e = bad(&format!(
            "{base}redirect_url: http://127.0.0.1:2/ui/auth/callback\nroles: []\n"
        ));
        assert!(e.contains("roles is empty"), "{e}");
        let e = serde_saphyr::from_str::<SsoFile>(&format!(
            "{base}redirect_url: x\nroles: []\nsecret: oops\n"
        ))
        .expect_err("unknown field")
        .to_string();
        assert!(e.contains("secret"), "{e}");
        // The secret's variable must be set; the secret never shows.
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("sso.yaml");
        std::fs::write(
            &p,
            "issuer: http://127.0.0.1:1\nclient_id: c\nclient_secret_env: SSO_TEST_UNSET_SECRET_OF_MISSIONCTL\nredirect_url: http://127.0.0.1:2/ui/auth/callback\nroles: [{group: a, role: admin}]\n",
        )
        .expect("write");
        let e = Sso::load(&p).expect_err("no secret").to_string();
        assert!(
            e.contains("SSO_TEST_UNSET_SECRET_OF_MISSIONCTL") && e.contains("not set"),
            "{e}"
        );
        let shown = format!("{:?}", sso("  - {group: a, role: admin}\n"));
        assert!(shown.contains("***") && !shown.contains("\"s\""), "{shown}");
    }
}
