//! Element types of torch storages and their conversion to f32 (ironbound computes in f32).

/// A storage's element type, from its pickled class (`torch.FloatStorage`) or, for
/// `_rebuild_tensor_v3`, its dtype (`torch.float32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    /// A type of known width that ironbound does not convert (complex, quantized, float8).
    Other(usize),
    /// A type we do not know at all: its storages cannot even be sized.
    Unknown,
}

impl DType {
    /// `torch.FloatStorage` and friends (`torch.cuda.*` in some old files).
    pub fn from_storage_type(name: &str) -> DType {
        let base = name.strip_prefix("torch.cuda.").or_else(|| name.strip_prefix("torch.")).unwrap_or("");
        match base {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "QUInt8Storage" | "QInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => DType::Other(1),
            "BoolStorage" => DType::Bool,
            "QInt32Storage" => DType::Other(4),
            "ComplexFloatStorage" => DType::Other(8),
            "ComplexDoubleStorage" => DType::Other(16),
            _ => DType::Unknown,
        }
    }

    /// `torch.float32` and its aliases, as `_rebuild_tensor_v3` receives them.
    pub fn from_torch_dtype(name: &str) -> DType {
        match name.strip_prefix("torch.").unwrap_or("") {
            "float64" | "double" => DType::F64,
            "float32" | "float" => DType::F32,
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "int64" | "long" => DType::I64,
            "int32" | "int" => DType::I32,
            "int16" | "short" => DType::I16,
            "int8" => DType::I8,
            "uint8" => DType::U8,
            "bool" => DType::Bool,
            n if n.starts_with("float8") => DType::Other(1),
            "complex64" | "cfloat" => DType::Other(8),
            "complex128" | "cdouble" => DType::Other(16),
            _ => DType::Unknown,
        }
    }

    /// Bytes per element, when known.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::Other(n) => n,
            DType::Unknown => return None,
        })
    }

    /// Element `bytes` (exactly `size()` long) as f32; None for types we do not convert.
    pub fn decoder(self, big_endian: bool) -> Option<fn(&[u8]) -> f32> {
        macro_rules! dec {
            ($t:ty, $n:literal, $conv:expr) => {
                if big_endian {
                    |b: &[u8]| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(&b[..$n]);
                        ($conv)(<$t>::from_be_bytes(a))
                    }
                } else {
                    |b: &[u8]| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(&b[..$n]);
                        ($conv)(<$t>::from_le_bytes(a))
                    }
                }
            };
        }
        Some(match self {
            DType::F64 => dec!(f64, 8, |v: f64| v as f32),
            DType::F32 => dec!(f32, 4, |v: f32| v),
            DType::F16 => dec!(u16, 2, f16_to_f32),
            DType::BF16 => dec!(u16, 2, |v: u16| f32::from_bits((v as u32) << 16)),
            DType::I64 => dec!(i64, 8, |v: i64| v as f32),
            DType::I32 => dec!(i32, 4, |v: i32| v as f32),
            DType::I16 => dec!(i16, 2, |v: i16| v as f32),
            DType::I8 => |b: &[u8]| b[0] as i8 as f32,
            DType::U8 => |b: &[u8]| b[0] as f32,
            DType::Bool => |b: &[u8]| if b[0] != 0 { 1.0 } else { 0.0 },
            DType::Other(_) | DType::Unknown => return None,
        })
    }
}

/// IEEE binary16 to binary32, exactly (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        // Subnormal: frac * 2^-24, exact in f32.
        0 => {
            let v = frac as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn storage_type_names() {
        assert_eq!(DType::from_storage_type("torch.FloatStorage"), DType::F32);
        assert_eq!(DType::from_storage_type("torch.cuda.HalfStorage"), DType::F16);
        assert_eq!(DType::from_storage_type("torch.ComplexFloatStorage"), DType::Other(8));
        assert_eq!(DType::from_storage_type("os.system"), DType::Unknown);
        assert_eq!(DType::from_torch_dtype("torch.bfloat16"), DType::BF16);
    }
}
