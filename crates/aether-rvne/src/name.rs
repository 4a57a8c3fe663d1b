//! A fixed-capacity, inline tensor/field name, so errors and tensor specs need no allocator.

use core::fmt;

/// Longest tensor name the format accepts, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// An inline UTF-8 string of at most [`MAX_NAME_LEN`] bytes (longer input is truncated
/// at a character boundary, which only happens when quoting bad input in an error).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    buf: [u8; MAX_NAME_LEN],
    len: u8,
}

impl Name {
    /// The empty name.
    pub const fn empty() -> Self {
        Self {
            buf: [0; MAX_NAME_LEN],
            len: 0,
        }
    }

    /// Copies `s`, truncating at a character boundary if it is longer than [`MAX_NAME_LEN`].
    pub fn new(s: &str) -> Self {
        let mut n = Self::empty();
        n.push_str(s);
        n
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (see `push_str`).
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    fn push_str(&mut self, s: &str) {
        for ch in s.chars() {
            let mut tmp = [0u8; 4];
            let enc = ch.encode_utf8(&mut tmp).as_bytes();
            let at = self.len as usize;
            if at + enc.len() > MAX_NAME_LEN {
                return;
            }
            self.buf[at..at + enc.len()].copy_from_slice(enc);
            self.len += enc.len() as u8;
        }
    }
}

impl fmt::Write for Name {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn truncates_at_char_boundary() {
        let long = "é".repeat(40); // 80 bytes
        let n = Name::new(&long);
        assert_eq!(n.as_str().len(), 64);
        let mut m = Name::empty();
        write!(m, "layers.{}.wq", 12).unwrap();
        assert_eq!(m, "layers.12.wq");
    }
}
