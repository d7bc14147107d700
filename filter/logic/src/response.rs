//! What the filter records about a response: its status class and a gRPC error code.

pub use outrider_protocol::StatusClass;

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
