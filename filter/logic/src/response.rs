//! What the filter records about a response: its status class and a gRPC error code.

/// Response status classes counted per variant. 1xx responses are interim and never
/// final in Envoy's filter chain, so they have no class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
}

impl StatusClass {
    pub const ALL: [StatusClass; 4] = [
        StatusClass::Success,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    /// The class of an HTTP `:status` value, if it is a final status.
    pub fn of_status(status: &str) -> Option<Self> {
        match status.trim().parse::<u16>().ok()? {
            200..=299 => Some(StatusClass::Success),
            300..=399 => Some(StatusClass::Redirect),
            400..=499 => Some(StatusClass::ClientError),
            500..=599 => Some(StatusClass::ServerError),
            _ => None,
        }
    }

    /// The `class` label value.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        }
    }

    /// Position in [`Self::ALL`], for per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// gRPC status codes run from 0 (OK) to 16; anything else is counted as one bucket.
pub const GRPC_CODES: usize = 17;
/// Index of the bucket for values that are not a known code.
pub const GRPC_OTHER: usize = GRPC_CODES;

/// The error bucket of a `grpc-status` value: `None` for OK, the code for 1..=16, and
/// [`GRPC_OTHER`] for anything unparseable or out of range.
pub fn grpc_error(value: &str) -> Option<usize> {
    match value.trim().parse::<usize>() {
        Ok(0) => None,
        Ok(code) if code < GRPC_CODES => Some(code),
        _ => Some(GRPC_OTHER),
    }
}

/// The `grpc_status` label value of an error bucket.
pub fn grpc_label(bucket: usize) -> String {
    if bucket < GRPC_CODES {
        bucket.to_string()
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(StatusClass::of_status("200"), Some(StatusClass::Success));
        assert_eq!(StatusClass::of_status("204"), Some(StatusClass::Success));
        assert_eq!(StatusClass::of_status("302"), Some(StatusClass::Redirect));
        assert_eq!(
            StatusClass::of_status("404"),
            Some(StatusClass::ClientError)
        );
        assert_eq!(
            StatusClass::of_status("503"),
            Some(StatusClass::ServerError)
        );
        assert_eq!(StatusClass::of_status("101"), None);
        assert_eq!(StatusClass::of_status("600"), None);
        assert_eq!(StatusClass::of_status("abc"), None);
        assert_eq!(StatusClass::of_status(""), None);
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn grpc_codes() {
        assert_eq!(grpc_error("0"), None);
        assert_eq!(grpc_error("14"), Some(14));
        assert_eq!(grpc_error("16"), Some(16));
        assert_eq!(grpc_error("17"), Some(GRPC_OTHER));
        assert_eq!(grpc_error("x"), Some(GRPC_OTHER));
        assert_eq!(grpc_label(14), "14");
        assert_eq!(grpc_label(GRPC_OTHER), "other");
    }
}
