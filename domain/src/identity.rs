//! Access tokens: who is calling.
//!
//! A user-scoped call carries a JWT whose `sub` is the user. By default the
//! service is its own issuer (HS256 with `AUTH_JWT_SECRET`); with
//! `AUTH_JWT_PUBLIC_KEY` it trusts an external identity provider instead
//! (RS256 or ES256, detected from the key) and mints nothing itself. Either way
//! the accepted algorithm is fixed by configuration, never taken from the
//! token, so `alg: none` and key-confusion tokens are refused; `exp`, `iss` and
//! `aud` are required and checked. No HTTP here: the api maps [`Rejected`] to 401.
//!
//! Which user a token names: a `sub` spelled exactly as a canonical UUID
//! (lowercase, hyphenated, as [`Uuid`]'s `Display` writes it) is the user id
//! itself, so a provider that keys users by UUID (Keycloak) keeps its ids. Any
//! other `sub` of an external provider — other spellings of a UUID included
//! (braced, `urn:uuid:`, upper case, unhyphenated) — is a name, mapped to
//! UUIDv5(`iss`|`sub`): two distinct subjects never share one account merely
//! because both parse as the same UUID. The built-in issuer mints canonical
//! ids only and refuses any other `sub`.

use chrono::{DateTime, Utc};
use entity::{users, wallets};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, EntityTrait, TransactionTrait, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    accounts,
    error::{Error, Result},
    platform::config::{Config, ConfigError},
};

/// `iss` of the built-in issuer's tokens unless `AUTH_ISSUER` says otherwise.
pub const DEFAULT_ISSUER: &str = "concert";
/// `aud` of the built-in issuer's tokens unless `AUTH_AUDIENCE` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "concert-api";
/// Longer bearer strings are refused before any parsing (a JWT of ours is ~250 bytes).
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// Maps a provider's non-canonical-UUID `sub` to a stable user id (with the issuer).
const SUBJECT_NAMESPACE: Uuid = Uuid::from_u128(0x3b8e_51c2_9d47_4a06_b1f3_6c2e_8a5d_7f90);

/// The claims this service reads and, as the built-in issuer, writes.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    // Defaulted so a missing `sub` reaches the validation and reads as a missing claim.
    #[serde(default)]
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    iss: String,
    aud: Audience,
    /// Display name; an external provider's is used when it creates the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// `aud` as RFC 7519 §4.1.3 allows it: one string, or an array (Keycloak and
/// Auth0 send arrays). Membership is checked by the [`Validation`]; the
/// built-in issuer writes [`Audience::One`], a plain string.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    /// The token's `name` claim, if any.
    pub name: Option<String>,
}

/// A freshly minted access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a bearer string is not a valid access token. The text is safe to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the access token is too long")]
    TooLong,
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    #[error("the access token is signed with an algorithm this service does not accept")]
    WrongAlgorithm,
    #[error("the access token's signature is not valid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued by an issuer this service does not trust")]
    WrongIssuer,
    #[error("the access token is meant for another audience")]
    WrongAudience,
    #[error("the access token lacks a required claim (sub, exp, iss, aud)")]
    MissingClaim,
    #[error("the access token's subject is not a user id")]
    BadSubject,
}

/// Verifies access tokens and, as the built-in issuer, mints them.
#[derive(Clone)]
pub struct Identity {
    decoding: DecodingKey,
    /// `None` when an external provider issues the tokens.
    encoding: Option<EncodingKey>,
    algorithm: Algorithm,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("external", &self.is_external())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The issuer configured by `AUTH_*` and `ACCESS_TOKEN_TTL_SECONDS`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let ttl = chrono::Duration::from_std(config.access_token_ttl).unwrap_or_default();
        let Some(pem) = &config.auth_jwt_public_key else {
            let secret = config.auth_jwt_secret.as_bytes();
            let bad_secret = |e: jsonwebtoken::errors::Error| ConfigError {
                name: "AUTH_JWT_SECRET",
                value: "<redacted>".into(),
                reason: e.to_string(),
            };
            return Ok(Self::new(
                DecodingKey::from_secret(secret).map_err(bad_secret)?,
                Some(EncodingKey::from_secret(secret).map_err(bad_secret)?),
                Algorithm::HS256,
                config.auth_issuer.as_deref().unwrap_or(DEFAULT_ISSUER),
                config.auth_audience.as_deref().unwrap_or(DEFAULT_AUDIENCE),
                ttl,
            ));
        };
        let bad_key = |reason: &str| ConfigError {
            name: "AUTH_JWT_PUBLIC_KEY",
            value: "<PEM>".into(),
            reason: reason.into(),
        };
        let (decoding, algorithm) = match (
            DecodingKey::from_rsa_pem(pem.as_bytes()),
            DecodingKey::from_ec_pem(pem.as_bytes()),
        ) {
            (Ok(key), _) => (key, Algorithm::RS256),
            (_, Ok(key)) => (key, Algorithm::ES256),
            _ => return Err(bad_key("not a PEM RSA or P-256 EC public key")),
        };
        let required = |name: &'static str, value: &Option<String>| {
            value.clone().ok_or_else(|| ConfigError {
                name,
                value: String::new(),
                reason: "must be set with AUTH_JWT_PUBLIC_KEY (the provider's value)".into(),
            })
        };
        let issuer = required("AUTH_ISSUER", &config.auth_issuer)?;
        let audience = required("AUTH_AUDIENCE", &config.auth_audience)?;
        Ok(Self::new(
            decoding, None, algorithm, &issuer, &audience, ttl,
        ))
    }

    fn new(
        decoding: DecodingKey,
        encoding: Option<EncodingKey>,
        algorithm: Algorithm,
        issuer: &str,
        audience: &str,
        ttl: chrono::Duration,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        Self {
            decoding,
            encoding,
            algorithm,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// True when an external provider issues the tokens (users are created on first use).
    pub fn is_external(&self) -> bool {
        self.encoding.is_none()
    }

    /// Mints an access token for `user_id`; `None` when an external provider is the issuer.
    pub fn mint(&self, user_id: Uuid) -> Option<Minted> {
        let key = self.encoding.as_ref()?;
        let now = Utc::now();
        let expires_at = now + self.ttl;
        let claims = Claims {
            sub: user_id.to_string(),
            exp: expires_at.timestamp(),
            iat: Some(now.timestamp()),
            iss: self.issuer.clone(),
            aud: Audience::One(self.audience.clone()),
            name: None,
        };
        // HS256 over our own claims cannot fail; `ok()` keeps a panic out of the path anyway.
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).ok()?;
        Some(Minted { token, expires_at })
    }

    /// Verifies `token` and names its user.
    pub fn verify(&self, token: &str) -> Result<Caller, Rejected> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejected::TooLong);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| rejected(e.kind()))?;
        let claims = data.claims;
        let user_id = self.user_id_of(&claims.iss, &claims.sub)?;
        Ok(Caller {
            user_id,
            name: claims.name,
        })
    }

    /// The user a verified token's `sub` names (see the module docs): only the
    /// canonical spelling of a UUID is taken verbatim, so two distinct `sub`
    /// strings never name one user by parsing alike.
    fn user_id_of(&self, iss: &str, sub: &str) -> Result<Uuid, Rejected> {
        match Uuid::parse_str(sub) {
            Ok(id) if id.hyphenated().to_string() == sub => Ok(id),
            _ if self.is_external() && !sub.is_empty() => Ok(Uuid::new_v5(
                &SUBJECT_NAMESPACE,
                format!("{iss}|{sub}").as_bytes(),
            )),
            _ => Err(Rejected::BadSubject),
        }
    }
}

fn rejected(kind: &ErrorKind) -> Rejected {
    match kind {
        ErrorKind::InvalidSignature => Rejected::BadSignature,
        ErrorKind::ExpiredSignature => Rejected::Expired,
        ErrorKind::ImmatureSignature => Rejected::NotYetValid,
        ErrorKind::InvalidIssuer => Rejected::WrongIssuer,
        ErrorKind::InvalidAudience => Rejected::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => Rejected::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Rejected::WrongAlgorithm,
        _ => Rejected::Malformed,
    }
}

/// Creates the caller's user and wallet if they do not exist yet (an external
/// provider's first token of a new `sub`). Safe under concurrent first calls:
/// both inserts are `ON CONFLICT DO NOTHING`, so exactly one user row results.
pub async fn provision(db: &DatabaseConnection, caller: &Caller) -> Result<()> {
    let name = caller
        .name
        .as_deref()
        .and_then(|n| accounts::validate_name(n).ok())
        .unwrap_or_else(|| "user".to_owned());
    let now = Utc::now();
    let txn = db.begin().await?;
    users::Entity::insert(users::ActiveModel {
        id: Set(caller.user_id),
        name: Set(name),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(users::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    wallets::Entity::insert(wallets::ActiveModel {
        user_id: Set(caller.user_id),
        balance: Set(0),
        version: Set(0),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(wallets::Column::UserId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await.map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn built_in() -> Identity {
        Identity::from_config(&Config::from_map(&HashMap::new()).expect("defaults")).expect("valid")
    }

    fn sign(claims: &serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret).expect("a secret key"),
        )
        .expect("encode")
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        serde_json::json!({
            "sub": Uuid::nil().to_string(),
            "exp": Utc::now().timestamp() + exp_offset,
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
        })
    }

    #[test]
    fn a_minted_token_verifies_as_its_user() {
        let id = built_in();
        let user = Uuid::now_v7();
        let minted = id.mint(user).expect("built-in issuer mints");
        assert_eq!(id.verify(&minted.token).expect("valid").user_id, user);
        assert!(minted.expires_at > Utc::now() + chrono::Duration::hours(23));
    }

    #[test]
    fn each_kind_of_bad_token_is_rejected_for_its_reason() {
        let id = built_in();
        let secret = crate::platform::config::DEV_JWT_SECRET.as_bytes();
        let forged = sign(&claims(3600), b"another-secret-of-at-least-32-bytes!");
        assert_eq!(id.verify(&forged), Err(Rejected::BadSignature));
        assert_eq!(
            id.verify(&sign(&claims(-3600), secret)),
            Err(Rejected::Expired)
        );
        let mut wrong_iss = claims(3600);
        wrong_iss["iss"] = "someone-else".into();
        assert_eq!(
            id.verify(&sign(&wrong_iss, secret)),
            Err(Rejected::WrongIssuer)
        );
        let mut wrong_aud = claims(3600);
        wrong_aud["aud"] = "another-api".into();
        assert_eq!(
            id.verify(&sign(&wrong_aud, secret)),
            Err(Rejected::WrongAudience)
        );
        let mut no_sub = claims(3600);
        no_sub.as_object_mut().expect("object").remove("sub");
        assert_eq!(
            id.verify(&sign(&no_sub, secret)),
            Err(Rejected::MissingClaim)
        );
        let mut bad_sub = claims(3600);
        bad_sub["sub"] = "not-a-uuid".into();
        assert_eq!(
            id.verify(&sign(&bad_sub, secret)),
            Err(Rejected::BadSubject)
        );
        assert_eq!(id.verify(&"x".repeat(5000)), Err(Rejected::TooLong));
        assert_eq!(id.verify("wr1.abc.def"), Err(Rejected::Malformed));
    }

    #[test]
    fn alg_none_is_rejected() {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
        let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64.encode(claims(3600).to_string());
        let verdict = built_in().verify(&format!("{header}.{body}."));
        assert!(
            matches!(verdict, Err(Rejected::Malformed | Rejected::WrongAlgorithm)),
            "{verdict:?}"
        );
    }

    #[test]
    fn an_audience_array_is_accepted_when_it_names_this_service() {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
        let id = built_in();
        let secret = crate::platform::config::DEV_JWT_SECRET.as_bytes();
        let mut listed = claims(3600);
        listed["aud"] = serde_json::json!(["account", DEFAULT_AUDIENCE]);
        assert_eq!(
            id.verify(&sign(&listed, secret)).map(|c| c.user_id),
            Ok(Uuid::nil())
        );
        let mut unlisted = claims(3600);
        unlisted["aud"] = serde_json::json!(["account", "another-api"]);
        assert_eq!(
            id.verify(&sign(&unlisted, secret)),
            Err(Rejected::WrongAudience)
        );
        // What the built-in issuer writes stays a plain string.
        let minted = id.mint(Uuid::nil()).expect("built-in issuer mints");
        let body = minted.token.split('.').nth(1).expect("a payload");
        let body: serde_json::Value =
            serde_json::from_slice(&B64.decode(body).expect("base64")).expect("json");
        assert_eq!(body["aud"], DEFAULT_AUDIENCE);
    }

    #[test]
    fn only_the_canonical_spelling_of_a_uuid_subject_is_the_user_id_itself() {
        let config = Config::from_map(&HashMap::from([
            ("AUTH_JWT_PUBLIC_KEY", P256_PEM.to_owned()),
            ("AUTH_ISSUER", "https://idp.example".to_owned()),
            ("AUTH_AUDIENCE", "concert".to_owned()),
        ]))
        .expect("valid");
        let external = Identity::from_config(&config).expect("an ES256 key");
        let uuid = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").expect("a uuid");
        let canonical = uuid.to_string();
        assert_eq!(
            external.user_id_of("https://idp.example", &canonical),
            Ok(uuid)
        );
        let spellings = [
            canonical.to_uppercase(),
            format!("{{{canonical}}}"),
            format!("urn:uuid:{canonical}"),
            uuid.simple().to_string(),
        ];
        let mut ids: Vec<Uuid> = spellings
            .iter()
            .map(|sub| {
                external
                    .user_id_of("https://idp.example", sub)
                    .expect("mapped")
            })
            .collect();
        ids.push(uuid);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            spellings.len() + 1,
            "each spelling is its own user"
        );
        // The mapping is stable per (issuer, subject).
        assert_eq!(
            external.user_id_of("https://idp.example", &spellings[0]),
            Ok(Uuid::new_v5(
                &SUBJECT_NAMESPACE,
                format!("https://idp.example|{}", spellings[0]).as_bytes()
            ))
        );
        // The built-in issuer never mints another spelling: it names no user.
        assert_eq!(
            built_in().user_id_of(DEFAULT_ISSUER, &spellings[0]),
            Err(Rejected::BadSubject)
        );
        assert_eq!(built_in().user_id_of(DEFAULT_ISSUER, &canonical), Ok(uuid));
    }

    /// A P-256 public key (openssl ecparam -name prime256v1 … -pubout).
    const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAExrG67KzBU3cXoLcOH6tt+TfwZKbt\nmhuac4/Bg7ra0pFFAhxI9NxUdxnM1W5hEWSFe3YPJCPqXrJzmXtloOvorg==\n-----END PUBLIC KEY-----\n";

    #[test]
    fn an_external_provider_needs_issuer_and_audience() {
        let pem = P256_PEM;
        let config = Config::from_map(&HashMap::from([("AUTH_JWT_PUBLIC_KEY", pem.to_owned())]))
            .expect("valid");
        let error = Identity::from_config(&config).expect_err("issuer missing");
        assert_eq!(error.name, "AUTH_ISSUER");
        let config = Config::from_map(&HashMap::from([
            ("AUTH_JWT_PUBLIC_KEY", pem.to_owned()),
            ("AUTH_ISSUER", "https://idp.example".to_owned()),
            ("AUTH_AUDIENCE", "concert".to_owned()),
        ]))
        .expect("valid");
        let id = Identity::from_config(&config).expect("an ES256 key");
        assert!(id.is_external() && id.mint(Uuid::nil()).is_none());
        assert_eq!(id.algorithm, Algorithm::ES256);
    }
}
