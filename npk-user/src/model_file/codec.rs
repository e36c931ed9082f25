//! Little-endian primitives for the model file payload. The reader checks every length against
//! the bytes left before it allocates, so no byte string makes it panic or allocate much.

use super::ModelFileErrorKind;

#[derive(Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
}

impl Writer {
    pub(super) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A count as u32: the model file's consistency check keeps every count far below 2^32.
    pub(super) fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }

    pub(super) fn f32s(&mut self, v: &[f32]) {
        self.len(v.len());
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }

    pub(super) fn f64s(&mut self, v: &[f64]) {
        self.len(v.len());
        for &x in v {
            self.f64(x);
        }
    }

    pub(super) fn i32s(&mut self, v: &[i32]) {
        self.len(v.len());
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
}

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn malformed(&self, what: impl Into<String>) -> ModelFileErrorKind {
        ModelFileErrorKind::Malformed {
            offset: self.pos,
            what: what.into(),
        }
    }

    /// The next `n` bytes, for `what`.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelFileErrorKind> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.malformed(format!("{what} needs {n} bytes, {left} left")));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelFileErrorKind> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, ModelFileErrorKind> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self, what: &str) -> Result<u64, ModelFileErrorKind> {
        self.array(what).map(u64::from_le_bytes)
    }

    pub(super) fn f64(&mut self, what: &str) -> Result<f64, ModelFileErrorKind> {
        self.array(what).map(f64::from_le_bytes)
    }

    pub(super) fn len(&mut self, what: &str) -> Result<usize, ModelFileErrorKind> {
        self.u32(what).map(|n| n as usize)
    }

    /// A length-prefixed element run: the whole run is checked against the bytes left first.
    fn run(&mut self, size: usize, what: &str) -> Result<&'a [u8], ModelFileErrorKind> {
        let n = self.len(what)?;
        let bytes = n
            .checked_mul(size)
            .ok_or_else(|| self.malformed(format!("{what}: {n} elements")))?;
        self.take(bytes, what)
    }

    pub(super) fn bytes(&mut self, what: &str) -> Result<&'a [u8], ModelFileErrorKind> {
        self.run(1, what)
    }

    pub(super) fn string(&mut self, what: &str) -> Result<String, ModelFileErrorKind> {
        let start = self.pos;
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| ModelFileErrorKind::Malformed {
            offset: start,
            what: format!("{what} is not UTF-8"),
        })
    }

    pub(super) fn f32s(&mut self, what: &str) -> Result<Vec<f32>, ModelFileErrorKind> {
        let b = self.run(4, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub(super) fn f64s(&mut self, what: &str) -> Result<Vec<f64>, ModelFileErrorKind> {
        let b = self.run(8, what)?;
        Ok(b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect())
    }

    pub(super) fn i32s(&mut self, what: &str) -> Result<Vec<i32>, ModelFileErrorKind> {
        let b = self.run(4, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub(super) fn finish(&self) -> Result<(), ModelFileErrorKind> {
        let left = self.buf.len() - self.pos;
        if left > 0 {
            return Err(self.malformed(format!("{left} unread bytes after the last section")));
        }
        Ok(())
    }
}
