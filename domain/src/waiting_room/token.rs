//! Queue token strings: `wr1.<id>.<tag>`.
//!
//! `id` is 128 random bits (base64url); `tag` is a truncated HMAC-SHA256 over the
//! stack's Redis prefix and the id. A forged, tampered or other-environment token
//! is refused before any Redis lookup; the id alone keys the token's state.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

const VERSION: &str = "wr1";
const TAG_BYTES: usize = 16;

/// Signs and verifies tokens of one environment.
#[derive(Clone)]
pub struct TokenCodec {
    /// The HMAC keyed with the secret and fed `environment|`: cloned per token,
    /// so each tag costs the id's hashing, not the key schedule again (two of
    /// SHA-256's compressions per call; the issue path signs and checks tokens).
    keyed: Hmac<Sha256>,
    environment: String,
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCodec")
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

impl TokenCodec {
    /// `environment` (the Redis prefix) is mixed into every tag.
    pub fn new(secret: &[u8], environment: &str) -> Self {
        let mut keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .expect("HMAC accepts keys of any length");
        keyed.update(environment.as_bytes());
        keyed.update(b"|");
        Self {
            keyed,
            environment: environment.to_owned(),
        }
    }

    /// A fresh random token id.
    pub fn new_id() -> String {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        B64.encode(bytes)
    }

    /// The bearer string for `id`.
    pub fn encode(&self, id: &str) -> String {
        format!("{VERSION}.{id}.{}", B64.encode(self.tag(id)))
    }

    /// The id inside a well-formed, authentic token of this environment.
    pub fn decode<'a>(&self, token: &'a str) -> Option<&'a str> {
        let mut parts = token.split('.');
        let (version, id, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION || parts.next().is_some() || id.len() != 22 {
            return None;
        }
        let tag = B64.decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        self.mac(id).verify_truncated_left(&tag).ok()?;
        Some(id)
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac
    }

    fn tag(&self, id: &str) -> Vec<u8> {
        self.mac(id).finalize().into_bytes()[..TAG_BYTES].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips() {
        let codec = TokenCodec::new(b"secret", "stack-a");
        let id = TokenCodec::new_id();
        assert_eq!(codec.decode(&codec.encode(&id)), Some(id.as_str()));
    }

    #[test]
    fn the_tag_is_the_truncated_hmac_of_environment_and_id() {
        // Tokens issued before the keyed state was cached must still verify.
        let codec = TokenCodec::new(b"secret", "stack-a");
        let id = "AAAAAAAAAAAAAAAAAAAAAA";
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"secret").expect("key");
        mac.update(b"stack-a|AAAAAAAAAAAAAAAAAAAAAA");
        let tag = B64.encode(&mac.finalize().into_bytes()[..TAG_BYTES]);
        assert_eq!(codec.encode(id), format!("wr1.{id}.{tag}"));
        for _ in 0..3 {
            assert_eq!(
                codec.decode(&codec.encode(id)),
                Some(id),
                "the cached state is not consumed"
            );
        }
    }

    #[test]
    fn ids_carry_128_random_bits() {
        let id = TokenCodec::new_id();
        assert_eq!(B64.decode(&id).expect("base64").len(), 16);
        assert_ne!(id, TokenCodec::new_id());
    }

    #[test]
    fn tampered_forged_and_foreign_tokens_are_refused() {
        let codec = TokenCodec::new(b"secret", "stack-a");
        let id = TokenCodec::new_id();
        let token = codec.encode(&id);
        let other_id = TokenCodec::new_id();
        let swapped = token.replace(&id, &other_id);
        assert_eq!(codec.decode(&swapped), None, "id swapped under the old tag");
        assert_eq!(
            TokenCodec::new(b"secret", "stack-b").decode(&token),
            None,
            "other environment"
        );
        assert_eq!(
            TokenCodec::new(b"other", "stack-a").decode(&token),
            None,
            "other secret"
        );
        for junk in [
            "",
            "wr1",
            "wr1..",
            "Bearer x",
            &format!("{token}.x"),
            &token[..token.len() - 2],
        ] {
            assert_eq!(codec.decode(junk), None, "{junk:?}");
        }
    }
}
