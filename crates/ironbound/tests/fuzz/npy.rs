//! `.npy` / `.npz` inputs: files written by `io::npy` and by hand in NumPy's other layouts,
//! byte-level havoc, regenerated headers (any key order, bad dtypes, boundary dimensions,
//! nested brackets, wrong length fields) and `.npz` archives of such members.

use super::{havoc, near, Rng, Verdicts, INTERESTING_TEXT};
use ironbound::io::npy::{read_f32, read_labels, write_npy, write_npz};
use std::io::Write;
use std::path::Path;

pub const FILE: &str = "input.npy";

/// A `.npy` file: `version`, the header text padded as NumPy pads it, then `data`.
pub fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    let prefix = if version == 1 { 10 } else { 12 };
    while (prefix + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    match version {
        1 => out.extend((h.len() as u16).to_le_bytes()),
        _ => out.extend((h.len() as u32).to_le_bytes()),
    }
    out.extend(h);
    out.extend(data);
    out
}

fn npz_bytes(members: &[(String, Vec<u8>, bool)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, deflate) in members {
        let method = if *deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        // A duplicate member name is refused by the writer: the archive simply lacks it.
        if w.start_file(name.as_str(), zip::write::FileOptions::default().compression_method(method)).is_ok() {
            w.write_all(bytes).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

/// Real files: what ironbound writes, plus NumPy's other dtypes, byte orders and versions.
pub fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let p = dir.join("seed.npy");
    for (shape, data) in [
        (vec![2usize, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.5]),
        (vec![1, 1, 2, 2], vec![0.0, 0.25, 0.5, 1.0]),
        (vec![0], vec![]),
        (vec![3], vec![1.0, 0.0, 7.0]),
    ] {
        write_npy(&p, &shape, &data).unwrap();
        out.push(std::fs::read(&p).unwrap());
    }
    let z = dir.join("seed.npz");
    write_npz(&z, &[("x", &[2, 2], &[0.1, 0.2, 0.3, 0.4])]).unwrap();
    out.push(std::fs::read(&z).unwrap());
    write_npz(&z, &[("lower", &[2], &[-1.0, 0.5]), ("upper", &[2], &[1.0, 2.0])]).unwrap();
    out.push(std::fs::read(&z).unwrap());
    let f8: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    out.push(npy_bytes(2, "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", &f8));
    out.push(npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3), }", &[0, 7, 9]));
    let i8: Vec<u8> = [3i64, 0, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    out.push(npy_bytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", &i8));
    out.push(npy_bytes(3, "{\"shape\": (2L, 1L), \"descr\": \"<u2\", \"fortran_order\": True}", &[1, 0, 2, 0]));
    out
}

const DESCRS: &[&str] =
    &["<f4", "<f8", ">f8", ">f4", "|u1", "|i1", "<i8", ">i4", "<u2", "<u8", "=f4", "f4", "|f4", "<c8", "<U3", "O", "<f2", "<f4 ", ""];

/// A header dict in the style NumPy writes, with random damage.
fn header_text(rng: &mut Rng) -> String {
    let q = if rng.chance(1, 4) { '"' } else { '\'' };
    let dims: Vec<String> = (0..rng.below(5))
        .map(|_| if rng.chance(3, 4) { rng.below(5).to_string() } else { rng.pick(INTERESTING_TEXT).to_string() })
        .collect();
    let comma = if dims.len() == 1 || rng.chance(1, 3) { "," } else { "" };
    let mut entries = vec![
        format!("{q}descr{q}: {q}{}{q}", rng.pick(DESCRS)),
        format!("{q}fortran_order{q}: {}", rng.pick(&["False", "False", "False", "True", "True", "0"])),
        format!("{q}shape{q}: ({}{comma})", dims.join(", ")),
    ];
    match rng.below(8) {
        0 => drop(entries.remove(rng.below(3))),
        1 => entries.push(entries[rng.below(3)].clone()),
        2 => entries.push(format!("{q}extra{q}: 1")),
        3 => entries[0] = format!("{q}descr{q}: [({q}a{q}, {q}<f4{q})]"),
        4 => entries[0] = format!("{q}descr{q}: {}", "{".repeat(1 + rng.below(300))),
        _ => {}
    }
    for i in (1..entries.len()).rev() {
        entries.swap(i, rng.below(i + 1));
    }
    let trailing = if rng.chance(1, 2) { ", " } else { "" };
    format!("{{{}{trailing}}}", entries.join(", "))
}

/// A `.npy` file from a generated header, with about as much data as it asks for.
fn generated_npy(rng: &mut Rng) -> Vec<u8> {
    let mut text = header_text(rng).into_bytes();
    if rng.chance(1, 4) {
        havoc(rng, &mut text, &[], 0);
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let data_len = match rng.below(3) {
        0 => rng.below(64),
        _ => 8 * rng.below(8),
    };
    let data: Vec<u8> = (0..data_len).map(|_| rng.next() as u8).collect();
    let version = *rng.pick(&[1u8, 1, 1, 1, 2, 2, 3, 0, 4]);
    let mut bytes = npy_bytes(version.clamp(1, 3), &text, &data);
    match version {
        0 | 4 => bytes[6] = version,
        _ if rng.chance(1, 5) => {
            // The length field: off by a little, or a boundary value.
            let width = if bytes[6] == 1 { 2 } else { 4 };
            let typical = if width == 2 { u16::from_le_bytes([bytes[8], bytes[9]]) as u64 } else { u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as u64 };
            super::put_int(&mut bytes, 8, width, near(rng, typical), true);
        }
        _ => {}
    }
    bytes
}

pub fn generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let bytes = match rng.below(10) {
        0..=3 => {
            let mut b = rng.pick(seeds).clone();
            havoc(rng, &mut b, seeds, 128);
            b
        }
        4..=6 => generated_npy(rng),
        _ => {
            let members: Vec<(String, Vec<u8>, bool)> = (0..1 + rng.below(3))
                .map(|_| {
                    let name = rng.pick(&["x.npy", "lower.npy", "upper.npy", "labels.npy", "y.npy", "dir/x.npy", "x"]).to_string();
                    let content = if rng.chance(1, 2) { generated_npy(rng) } else { seeds[rng.below(4)].clone() };
                    (name, content, rng.chance(1, 2))
                })
                .collect();
            let mut b = npz_bytes(&members);
            if rng.chance(1, 2) {
                havoc(rng, &mut b, seeds, 0);
            }
            b
        }
    };
    vec![(FILE.to_string(), bytes)]
}

/// Both readers of the CLI (`--input` floats, `--labels` integers); what they accept must be
/// a consistent array.
pub fn exec(dir: &Path, v: &mut Verdicts) {
    let path = dir.join(FILE);
    if let Some(a) = v.file(read_f32(&path, &["x", "lower"]), dir) {
        assert_eq!(a.shape.iter().product::<usize>(), a.data.len(), "accepted floats: shape {:?}", a.shape);
        assert!(a.data.iter().all(|x| x.is_finite()), "accepted a non-finite float");
    }
    if let Some(a) = v.file(read_labels(&path), dir) {
        assert_eq!(a.shape.iter().product::<usize>(), a.data.len(), "accepted labels: shape {:?}", a.shape);
        assert!(a.data.iter().all(|&l| l >= 0), "accepted a negative label");
    }
}
