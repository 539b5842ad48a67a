//! The `.npy` header: magic, version, length and the Python dict literal that describes the
//! array, parsed here rather than by `npyz`.
//!
//! Why not `npyz`: its header parser backtracks, so a 112-byte header of nested braces takes
//! time exponential in the nesting depth; it trusts a version-2 length field up to 4 GiB and
//! allocates that much before reading; and it multiplies the shape without overflow checks.
//! This parser is a single left-to-right pass over at most [`MAX_HEADER_LEN`] bytes, accepts
//! exactly what NumPy writes (the keys `descr`, `fortran_order` and `shape`, each once), and
//! every size it derives is checked arithmetic.

/// `\x93NUMPY`, the first six bytes of every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest header accepted, in bytes. Version-1 headers cannot exceed 65535 bytes (a u16
/// length) and NumPy's own reader refuses headers over 10,000 bytes unless told otherwise
/// (`max_header_size`, since NumPy 1.24), so 64 KiB accepts every header NumPy reads while
/// keeping a hostile version-2/3 length field (up to 4 GiB) from becoming an allocation.
pub const MAX_HEADER_LEN: usize = 1 << 16;

/// Most dimensions accepted (NumPy 2 allows 64, NumPy 1 allowed 32).
const MAX_RANK: usize = 64;

/// Element types ironbound reads, all converted to f64 on load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
}

impl Kind {
    pub fn size(self) -> usize {
        match self {
            Kind::I1 | Kind::U1 => 1,
            Kind::I2 | Kind::U2 => 2,
            Kind::F4 | Kind::I4 | Kind::U4 => 4,
            Kind::F8 | Kind::I8 | Kind::U8 => 8,
        }
    }
}

/// What the header says about the array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// Byte order of the data (always true for one-byte types).
    pub little_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
}

impl Header {
    /// Number of elements, or an error when the shape's product overflows `usize`.
    pub fn numel(&self) -> Result<usize, String> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| format!("shape {:?} has more elements than fit in memory", self.shape))
    }

    /// Bytes of array data the header describes (checked).
    pub fn data_len(&self) -> Result<usize, String> {
        self.numel()?.checked_mul(self.kind.size()).ok_or_else(|| format!("shape {:?} needs more bytes than fit in memory", self.shape))
    }
}

/// Length of the fixed prefix (magic, version, length field) of a format version. (Version
/// 3 differs from 2 only in allowing UTF-8 in the header; only ASCII is accepted here.)
pub fn prefix_len(major: u8, minor: u8) -> Result<usize, String> {
    match (major, minor) {
        (1, 0) => Ok(10),
        (2, 0) | (3, 0) => Ok(12),
        _ => Err(format!("unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are supported)")),
    }
}

/// Parses the header text (the dict literal, with its padding).
pub fn parse(text: &[u8]) -> Result<Header, String> {
    let mut p = Parser { s: text, at: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.skip_space();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_slice() {
            b"descr" if descr.is_none() => descr = Some(p.descr()?),
            b"fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            b"shape" if shape.is_none() => shape = Some(p.shape()?),
            b"descr" | b"fortran_order" | b"shape" => return Err(format!("key '{}' appears twice", String::from_utf8_lossy(&key))),
            _ => return Err(format!("unexpected key '{}' (a .npy header has only 'descr', 'fortran_order' and 'shape')", p.show(&key))),
        }
        p.skip_space();
        if p.eat(b'}') {
            break;
        }
        p.expect(b',')?;
    }
    // NumPy pads the header with spaces and ends it with a newline; nothing else may follow.
    p.skip_space();
    if p.at < p.s.len() {
        return Err(format!("unexpected text after the header dict at byte {}", p.at));
    }
    let missing = |k: &str| format!("the header has no '{k}' key");
    let (kind, little_endian) = descr.ok_or_else(|| missing("descr"))?;
    Ok(Header { kind, little_endian, fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?, shape: shape.ok_or_else(|| missing("shape"))? })
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip_space();
        if self.eat(c) {
            return Ok(());
        }
        Err(match self.s.get(self.at) {
            Some(&b) => format!("expected '{}' at byte {} of the header, found {}", c as char, self.at, printable(b)),
            None => format!("expected '{}' at byte {} of the header, found its end", c as char, self.at),
        })
    }

    /// A quoted string without escapes (NumPy never writes any).
    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.skip_space();
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            Some(&b) => return Err(format!("expected a quoted string at byte {} of the header, found {}", self.at, printable(b))),
            None => return Err("the header ends inside its dict".into()),
        };
        let start = self.at + 1;
        let len = self.s[start..].iter().position(|&b| b == quote || b == b'\\' || b == b'\n').ok_or("unterminated string in the header")?;
        let end = start + len;
        if self.s[end] != quote {
            return Err(format!("unsupported character in a header string at byte {end}"));
        }
        self.at = end + 1;
        Ok(self.s[start..end].to_vec())
    }

    fn show(&self, s: &[u8]) -> String {
        let text = String::from_utf8_lossy(s);
        let mut short: String = text.chars().take(40).filter(|c| !c.is_control()).collect();
        if text.chars().count() > 40 {
            short.push_str("...");
        }
        short
    }

    fn descr(&mut self) -> Result<(Kind, bool), String> {
        self.skip_space();
        if self.s.get(self.at) == Some(&b'[') {
            return Err("structured dtypes (a list as 'descr') are not supported; save a plain numeric array".into());
        }
        let raw = self.string()?;
        let text = self.show(&raw);
        let (order, code) = match raw.first() {
            Some(&o @ (b'<' | b'>' | b'|' | b'=')) => (o, &raw[1..]),
            _ => (b'=', &raw[..]),
        };
        let kind = match code {
            b"f4" => Kind::F4,
            b"f8" => Kind::F8,
            b"i1" => Kind::I1,
            b"i2" => Kind::I2,
            b"i4" => Kind::I4,
            b"i8" => Kind::I8,
            b"u1" => Kind::U1,
            b"u2" => Kind::U2,
            b"u4" => Kind::U4,
            b"u8" => Kind::U8,
            _ => return Err(format!("unsupported dtype '{text}' (use float32, float64 or an integer type)")),
        };
        let little = match order {
            b'<' => true,
            b'>' => false,
            b'|' if kind.size() == 1 => true,
            b'|' => return Err(format!("dtype '{text}' has no byte order")),
            _ => cfg!(target_endian = "little"),
        };
        Ok((kind, little || kind.size() == 1))
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(format!("expected True or False for 'fortran_order' at byte {}", self.at))
    }

    /// A tuple of non-negative integers: `()`, `(3,)`, `(3, 4)`, trailing comma allowed
    /// (and Python 2's `3L`).
    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_space();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.at;
            let digits = self.s[start..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(format!("expected a dimension (a non-negative integer) at byte {start} of the header"));
            }
            let text = std::str::from_utf8(&self.s[start..start + digits]).map_err(|e| e.to_string())?;
            let d = text.parse::<usize>().map_err(|_| format!("dimension {text} is too large"))?;
            self.at += digits;
            self.eat(b'L');
            dims.push(d);
            if dims.len() > MAX_RANK {
                return Err(format!("more than {MAX_RANK} dimensions"));
            }
            self.skip_space();
            if self.eat(b')') {
                // Here no comma followed the first dimension: `(3)` is an int in Python, not
                // a tuple (NumPy writes `(3,)`).
                if dims.len() == 1 {
                    return Err("'shape' must be a tuple such as (3,)".into());
                }
                return Ok(dims);
            }
            self.expect(b',')?;
        }
    }
}

fn printable(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Header {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn reads_what_numpy_writes() {
        let h = ok("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 1, 28, 28), }          \n");
        assert_eq!(h, Header { kind: Kind::F4, little_endian: true, fortran_order: false, shape: vec![3, 1, 28, 28] });
        assert_eq!(ok("{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }").shape, vec![7]);
        assert_eq!(ok("{'descr': '>i8', 'fortran_order': True, 'shape': ()}").little_endian, false);
        assert_eq!(ok("{\"shape\": (2L, 3L), \"descr\": \"<f8\", \"fortran_order\": False}").shape, vec![2, 3]);
        assert_eq!(ok("{'descr':'<i4','fortran_order':False,'shape':(0,5)}").numel(), Ok(0));
    }

    #[test]
    fn rejects_anything_else_with_one_line() {
        for bad in [
            "",
            "{",
            "{'descr': '<f4'}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
            "{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}",
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk",
            "{'descr': '<f4\n', 'fortran_order': False, 'shape': (3,)}",
        ] {
            let e = parse(bad.as_bytes()).expect_err(bad);
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn nested_braces_fail_at_once() {
        // The fuzzing review's header: npyz takes time exponential in the nesting depth.
        let mut h = b"{'descr': ".to_vec();
        h.extend(std::iter::repeat_n(b'{', 60_000));
        // (A backtracking parser would not finish this test.)
        assert!(parse(&h).unwrap_err().contains("quoted string"));
    }

    #[test]
    fn overflowing_shapes_are_errors() {
        let big = usize::MAX / 2 + 1;
        let h = ok(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({big}, 2, 2)}}"));
        assert!(h.numel().is_err());
        let h = ok(&format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({},)}}", usize::MAX / 4));
        assert!(h.numel().is_ok() && h.data_len().is_err());
    }
}
