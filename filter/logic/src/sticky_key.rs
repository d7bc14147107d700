//! Where a request's sticky key comes from: a header (default `x-user-id`) or a cookie.

/// The configured source of the sticky key. Header names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(String),
    Cookie(String),
}

impl StickyKey {
    /// The header to read: the key's own header, or `cookie`.
    pub fn header_name(&self) -> &str {
        match self {
            StickyKey::Header(name) => name,
            StickyKey::Cookie(_) => "cookie",
        }
    }

    /// The key within the value of [`Self::header_name`]; empty keys count as absent.
    pub fn key_from<'a>(&self, header_value: &'a str) -> Option<&'a str> {
        let key = match self {
            StickyKey::Header(_) => header_value.trim(),
            StickyKey::Cookie(name) => cookie_value(header_value, name)?,
        };
        (!key.is_empty()).then_some(key)
    }

    /// [`Self::key_from`] for a value the caller owns: usually the value is the key,
    /// and is kept without a copy.
    pub fn owned_key_from(&self, header_value: String) -> Option<String> {
        let key = self.key_from(&header_value)?;
        if key.len() == header_value.len() {
            return Some(header_value);
        }
        Some(key.to_owned())
    }
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), unquoted. The first
/// occurrence wins, as in browsers that send the most specific path first.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k.trim() != name {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_are_trimmed_and_empty_is_absent() {
        let s = StickyKey::Header("x-user-id".into());
        assert_eq!(s.header_name(), "x-user-id");
        assert_eq!(s.key_from(" u42 "), Some("u42"));
        assert_eq!(s.key_from("   "), None);
        assert_eq!(s.key_from(""), None);
        assert_eq!(s.owned_key_from(" u42 ".into()).as_deref(), Some("u42"));
        assert_eq!(s.owned_key_from("u42".into()).as_deref(), Some("u42"));
        assert_eq!(s.owned_key_from(" ".into()), None);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let s = StickyKey::Cookie("uid".into());
        assert_eq!(s.header_name(), "cookie");
        assert_eq!(s.key_from("uid=u1"), Some("u1"));
        assert_eq!(s.key_from("a=1; uid=u2; b=3"), Some("u2"));
        assert_eq!(s.key_from("a=1;uid=\"u3\""), Some("u3"));
        assert_eq!(s.key_from("xuid=1; uidx=2"), None);
        assert_eq!(s.key_from("uid=; a=1"), None);
        assert_eq!(s.key_from("uid=first; uid=second"), Some("first"));
        assert_eq!(s.key_from("garbage; ;=;uid"), None);
        assert_eq!(s.key_from("a=b=c; uid=x=y"), Some("x=y"));
    }
}
