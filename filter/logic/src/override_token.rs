//! Overrides: a client may force a variant only with a token signed by a secret the
//! filter knows. A token is `<variant>.<expiry>.<signature>`, where expiry is a Unix
//! time in seconds and the signature is the lowercase hex HMAC-SHA256 of
//! `outrider-override/v1\n<rollout>\n<variant>\n<expiry>`. Binding the rollout name
//! keeps a token for one rollout from working on another that shares the secret.
//!
//! A token can be made with openssl:
//! `printf 'outrider-override/v1\nfraud\ncanary\n1767225600' | openssl dgst -sha256 -hmac "$SECRET"`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longer header values are refused unread: a valid token is far shorter.
pub const MAX_TOKEN_LEN: usize = 200;

/// The validated override part of the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct OverrideRule {
    /// Lowercase header name that carries the token.
    pub header: String,
    /// Any of these may have signed the token (more than one allows rotation).
    pub secrets: Vec<Vec<u8>>,
    /// Tokens that expire further in the future than this are refused, so a leaked
    /// token cannot be made to live for ever.
    pub max_ttl_seconds: u64,
}

impl std::fmt::Debug for OverrideRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverrideRule")
            .field("header", &self.header)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("max_ttl_seconds", &self.max_ttl_seconds)
            .finish()
    }
}

pub use outrider_protocol::OverrideRejection as Rejection;

/// A parsed, not yet verified token.
struct Token<'a> {
    variant: &'a str,
    expiry: u64,
    signature: [u8; 32],
}

fn parse(token: &str) -> Option<Token<'_>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.trim().splitn(3, '.');
    let variant = parts.next()?;
    let expiry = parts.next()?;
    let signature_hex = parts.next()?;
    if variant.is_empty() || expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut signature = [0u8; 32];
    hex::decode_to_slice(signature_hex, &mut signature).ok()?;
    Some(Token {
        variant,
        expiry: expiry.parse().ok()?,
        signature,
    })
}

fn mac(secret: &[u8], rollout: &str, variant: &str, expiry: u64) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(b"outrider-override/v1\n");
    mac.update(rollout.as_bytes());
    mac.update(b"\n");
    mac.update(variant.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    Some(mac)
}

impl OverrideRule {
    /// Checks a token and returns the variant it names. The signature is checked before
    /// the expiry, so a forged token is always reported as forged; the comparison is
    /// constant-time (`Mac::verify_slice`).
    pub fn verify<'t>(
        &self,
        rollout: &str,
        token: &'t str,
        now_unix: u64,
        is_variant: impl Fn(&str) -> bool,
    ) -> Result<&'t str, Rejection> {
        let parsed = parse(token).ok_or(Rejection::Malformed)?;
        if !is_variant(parsed.variant) {
            return Err(Rejection::UnknownVariant);
        }
        let authentic = self.secrets.iter().any(|secret| {
            mac(secret, rollout, parsed.variant, parsed.expiry)
                .is_some_and(|m| m.verify_slice(&parsed.signature).is_ok())
        });
        if !authentic {
            return Err(Rejection::BadSignature);
        }
        if parsed.expiry <= now_unix {
            return Err(Rejection::Expired);
        }
        if parsed.expiry - now_unix > self.max_ttl_seconds {
            return Err(Rejection::TtlTooLong);
        }
        Ok(parsed.variant)
    }
}

/// Makes a token; used by tests and tooling that hand tokens to QA clients.
pub fn mint(secret: &[u8], rollout: &str, variant: &str, expiry: u64) -> Option<String> {
    let tag = mac(secret, rollout, variant, expiry)?
        .finalize()
        .into_bytes();
    Some(format!("{variant}.{expiry}.{}", hex::encode(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn rule() -> OverrideRule {
        OverrideRule {
            header: "x-outrider-override".into(),
            secrets: vec![b"an-older-secret-still-valid".to_vec(), SECRET.to_vec()],
            max_ttl_seconds: 3600,
        }
    }

    fn known(v: &str) -> bool {
        v == "stable" || v == "canary"
    }

    fn check(token: &str) -> Result<&str, Rejection> {
        rule().verify("fraud", token, NOW, known)
    }

    #[test]
    fn a_valid_token_is_honoured() {
        let token = mint(SECRET, "fraud", "canary", NOW + 60).unwrap();
        assert_eq!(check(&token), Ok("canary"));
        let older = mint(b"an-older-secret-still-valid", "fraud", "stable", NOW + 60).unwrap();
        assert_eq!(check(&older), Ok("stable"));
    }

    /// Same bytes as `printf 'outrider-override/v1\nfraud\ncanary\n1767225600' |
    /// openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef`, so the documented
    /// openssl recipe keeps working.
    #[test]
    fn signature_matches_openssl() {
        let token = mint(SECRET, "fraud", "canary", 1_767_225_600).unwrap();
        assert_eq!(
            token,
            "canary.1767225600.485ffd5a1ba9b0c688e350ba24da127cbbc3428f03c804595e4144b4be1fb064"
        );
    }

    #[test]
    fn forged_and_tampered_tokens_are_refused() {
        let good = mint(SECRET, "fraud", "canary", NOW + 60).unwrap();
        let other_secret =
            mint(b"not-the-secret-at-all-0000", "fraud", "canary", NOW + 60).unwrap();
        assert_eq!(check(&other_secret), Err(Rejection::BadSignature));
        let other_rollout = mint(SECRET, "payments", "canary", NOW + 60).unwrap();
        assert_eq!(check(&other_rollout), Err(Rejection::BadSignature));
        let sig = good.rsplit('.').next().unwrap();
        assert_eq!(
            check(&format!("stable.{}.{sig}", NOW + 60)),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&format!("canary.{}.{sig}", NOW + 61)),
            Err(Rejection::BadSignature)
        );
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            check(std::str::from_utf8(&flipped).unwrap()),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn expiry_is_checked_after_the_signature() {
        let expired = mint(SECRET, "fraud", "canary", NOW).unwrap();
        assert_eq!(check(&expired), Err(Rejection::Expired));
        let too_long = mint(SECRET, "fraud", "canary", NOW + 3601).unwrap();
        assert_eq!(check(&too_long), Err(Rejection::TtlTooLong));
        let just_in = mint(SECRET, "fraud", "canary", NOW + 3600).unwrap();
        assert_eq!(check(&just_in), Ok("canary"));
        let forged_expired =
            mint(b"not-the-secret-at-all-0000", "fraud", "canary", NOW - 5).unwrap();
        assert_eq!(check(&forged_expired), Err(Rejection::BadSignature));
    }

    #[test]
    fn malformed_and_unknown() {
        let sig = "00".repeat(32);
        for bad in [
            String::new(),
            "canary".into(),
            "canary.123".into(),
            format!("canary..{sig}"),
            format!("canary.12a.{sig}"),
            format!("canary.-5.{sig}"),
            format!("canary.99999999999999999999999.{sig}"),
            "canary.123.zz".into(),
            format!("canary.123.{}", "00".repeat(31)),
            format!(".123.{sig}"),
            format!("canary.123.{sig}{}", "0".repeat(MAX_TOKEN_LEN)),
        ] {
            assert_eq!(check(&bad), Err(Rejection::Malformed), "{bad}");
        }
        assert_eq!(
            check(&format!("nope.123.{sig}")),
            Err(Rejection::UnknownVariant)
        );
    }

    #[test]
    fn spellings_that_are_accepted() {
        let token = mint(SECRET, "fraud", "canary", NOW + 60).unwrap();
        let (head, signature) = token.rsplit_once('.').unwrap();
        let upper = format!("{head}.{}", signature.to_ascii_uppercase());
        assert_eq!(check(&upper), Ok("canary"), "uppercase hex");
        assert_eq!(
            check(&format!("  {token}\t")),
            Ok("canary"),
            "surrounding space"
        );
        // The expiry is signed as the plain number, however the token writes it.
        let padded = token.replacen(".18", ".0018", 1);
        assert_ne!(padded, token);
        assert_eq!(check(&padded), Ok("canary"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let shown = format!("{:?}", rule());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("2 redacted"));
    }
}
