//! A body read as it streams by, up to a limit.

/// The bytes of a body so far; past its limit the read is abandoned (and the memory
/// given back), so one large body never holds more than the limit.
#[derive(Debug, Default)]
pub struct BoundedBody {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl BoundedBody {
    pub fn push(&mut self, chunk: &[u8], limit: usize) {
        if self.overflowed {
            return;
        }
        if self.bytes.len() + chunk.len() > limit {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }

    /// The whole body, unless it went over the limit.
    pub fn complete(&self) -> Option<&[u8]> {
        (!self.overflowed).then_some(self.bytes.as_slice())
    }

    /// The whole body if it is at most `limit` bytes: one buffer serves readers with
    /// different limits.
    pub fn within(&self, limit: usize) -> Option<&[u8]> {
        self.complete().filter(|b| b.len() <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_kept_within_their_limit() {
        let mut body = BoundedBody::default();
        body.push(b"{\"inputs\": ", 32);
        body.push(b"[1, 2]}", 32);
        assert_eq!(body.complete(), Some(&b"{\"inputs\": [1, 2]}"[..]));
        assert_eq!(body.within(18), body.complete());
        assert_eq!(body.within(17), None);
        let mut big = BoundedBody::default();
        big.push(&[b'x'; 40], 64);
        big.push(&[b'x'; 40], 64);
        assert_eq!(big.complete(), None);
        big.push(b"x", 64);
        assert_eq!(big.complete(), None, "once over, always over");
        assert_eq!(BoundedBody::default().complete(), Some(&b""[..]));
    }
}
