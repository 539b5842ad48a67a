//! Dataset files: MNIST-layout IDX pairs (raw and gzipped), CIFAR-10 binary batches and
//! SVHN `.mat` files, built like the data loader's own tests build them, then damaged in
//! their headers (counts, sizes, magic numbers, MATLAB element tags and dimensions) as well
//! as byte by byte. Each is read through `data::load_from_dir`, the path `--data-dir` takes.

use super::{havoc, near, put_int, Rng, Verdicts, INTERESTING};
use ironbound::data::{load_from_dir, Dataset, DatasetName, Split};
use std::io::Write;
use std::path::Path;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Whatever a loader accepts is a well-formed dataset.
fn check_dataset(d: &Dataset) {
    assert_eq!(d.images.len(), d.len() * d.sample_len(), "accepted images do not match the labels");
    assert!(d.labels.iter().all(|&l| l < 10), "accepted a label outside 0..10");
    assert!(d.images.iter().all(|p| (0.0..=1.0).contains(p)), "accepted a pixel outside [0, 1]");
}

// ---------------------------------------------------------------- IDX

pub const IDX_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const IDX_LABELS: &str = "t10k-labels-idx1-ubyte";

/// IDX3 images (`n` of `side` x `side`) and their IDX1 labels.
fn idx_pair(labels: &[u8], side: u32) -> (Vec<u8>, Vec<u8>) {
    let mut img = Vec::new();
    for x in [0x0803u32, labels.len() as u32, side, side] {
        img.extend(x.to_be_bytes());
    }
    img.extend((0..labels.len() * (side * side) as usize).map(|k| (k * 7 % 256) as u8));
    let mut lab = Vec::new();
    lab.extend(0x0801u32.to_be_bytes());
    lab.extend((labels.len() as u32).to_be_bytes());
    lab.extend(labels);
    (img, lab)
}

pub fn idx_seeds() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![idx_pair(&[3], 28), idx_pair(&[0, 9, 4], 28), idx_pair(&[], 28), idx_pair(&[1, 2], 27)]
}

/// Damages an IDX file: a header field (magic, count, rows, cols) set to a boundary value,
/// or havoc biased to the header.
fn damage_idx(rng: &mut Rng, bytes: &mut Vec<u8>, donors: &[Vec<u8>]) {
    if rng.chance(1, 2) {
        let field = 4 * rng.below(4);
        let typical = bytes.get(field..field + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64);
        put_int(bytes, field, 4, near(rng, typical), false);
        if rng.chance(1, 3) {
            bytes.truncate(rng.below(bytes.len() + 1));
        }
    } else {
        havoc(rng, bytes, donors, 16);
    }
}

/// An IDX pair where one or both files are damaged; `gz`: stored gzipped, and then sometimes
/// the gzip stream itself is damaged, or is followed by another member or by garbage.
pub fn idx_generate(rng: &mut Rng, seeds: &[(Vec<u8>, Vec<u8>)], gz: bool) -> Vec<(String, Vec<u8>)> {
    let (mut img, mut lab) = rng.pick(seeds).clone();
    let donors: Vec<Vec<u8>> = seeds.iter().flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
    match rng.below(10) {
        0..=4 => damage_idx(rng, &mut img, &donors),
        5..=8 => damage_idx(rng, &mut lab, &donors),
        _ => {
            damage_idx(rng, &mut img, &donors);
            damage_idx(rng, &mut lab, &donors);
        }
    }
    if !gz {
        return vec![(IDX_IMAGES.into(), img), (IDX_LABELS.into(), lab)];
    }
    let mut files = [gzip(&img), gzip(&lab)];
    if rng.chance(1, 3) {
        let f = &mut files[rng.below(2)];
        match rng.below(4) {
            0 => f.extend(gzip(&lab)),
            1 => f.extend((0..1 + rng.below(16)).map(|_| rng.next() as u8)),
            // Raw bytes under a .gz name: the reader sniffs the magic, not the name.
            2 => *f = img.clone(),
            _ => havoc(rng, f, &[], 24),
        }
    }
    let [img, lab] = files;
    vec![(format!("{IDX_IMAGES}.gz"), img), (format!("{IDX_LABELS}.gz"), lab)]
}

pub fn idx_exec(dir: &Path, v: &mut Verdicts) {
    if let Some(d) = v.file(load_from_dir(DatasetName::Mnist, Split::Test, dir), dir) {
        check_dataset(&d);
    }
}

// ---------------------------------------------------------------- CIFAR-10

pub const CIFAR_FILE: &str = "test_batch.bin";
const RECORD: usize = 3073;

fn cifar_batch(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        v.extend((0..3072).map(|k| ((i + 3 * k) % 256) as u8));
    }
    v
}

pub fn cifar_seeds() -> Vec<Vec<u8>> {
    vec![cifar_batch(&[6]), cifar_batch(&[9, 0]), cifar_batch(&[1, 2, 3])]
}

/// A batch with damaged labels (the byte starting each record), a length that is not a
/// whole number of records (CIFAR-100's 3074 included), byte havoc, or gzip around it all.
pub fn cifar_generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut b = rng.pick(seeds).clone();
    match rng.below(6) {
        0 | 1 => {
            let at = RECORD * rng.below(b.len() / RECORD + 1);
            if at < b.len() {
                b[at] = *rng.pick(&[9u8, 10, 11, 100, 255]);
            }
        }
        2 => {
            let n = rng.below(b.len() + 2 * RECORD);
            b.resize(n, 0);
        }
        3 => b = [1u8, 2].iter().flat_map(|&l| std::iter::once(0).chain(std::iter::once(l)).chain((0..3072).map(|_| 1))).collect(),
        _ => havoc(rng, &mut b, seeds, 0),
    }
    if rng.chance(1, 5) {
        b = gzip(&b);
        if rng.chance(1, 2) {
            havoc(rng, &mut b, &[], 24);
        }
    }
    vec![(CIFAR_FILE.into(), b)]
}

pub fn cifar_exec(dir: &Path, v: &mut Verdicts) {
    if let Some(d) = v.file(load_from_dir(DatasetName::Cifar10, Split::Test, dir), dir) {
        check_dataset(&d);
    }
}

// ---------------------------------------------------------------- SVHN

pub const SVHN_FILE: &str = "test_32x32.mat";

/// Writes MATLAB v5 words in one byte order.
#[derive(Clone, Copy)]
struct Mat {
    little: bool,
}

impl Mat {
    fn word(self, v: u32) -> [u8; 4] {
        if self.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }

    fn header(self) -> Vec<u8> {
        let mut h = b"MATLAB 5.0 MAT-file, written by ironbound's fuzz tests".to_vec();
        h.resize(116, b' ');
        h.extend([0; 8]);
        h.extend(if self.little { 0x0100u16.to_le_bytes() } else { 0x0100u16.to_be_bytes() });
        h.extend(if self.little { b"IM" } else { b"MI" });
        h
    }

    /// One uncompressed miMATRIX element (tag included), per the MAT v5 spec.
    fn matrix(self, name: &str, class: u32, dims: &[u32], data_type: u32, data: &[u8]) -> Vec<u8> {
        let pad8 = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(8) * 8, 0);
        let mut body = Vec::new();
        for w in [6u32, 8, class, 0] {
            body.extend(self.word(w));
        }
        body.extend(self.word(5));
        body.extend(self.word(4 * dims.len() as u32));
        for &d in dims {
            body.extend(self.word(d));
        }
        pad8(&mut body);
        if name.len() <= 4 {
            body.extend(self.word(1 | ((name.len() as u32) << 16)));
            let mut n = name.as_bytes().to_vec();
            n.resize(4, 0);
            body.extend(n);
        } else {
            body.extend(self.word(1));
            body.extend(self.word(name.len() as u32));
            body.extend(name.as_bytes());
            pad8(&mut body);
        }
        body.extend(self.word(data_type));
        body.extend(self.word(data.len() as u32));
        body.extend(data);
        pad8(&mut body);
        let mut el = self.word(14).to_vec();
        el.extend(self.word(body.len() as u32));
        el.extend(body);
        el
    }

    fn compressed(self, element: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(element).unwrap();
        let z = z.finish().unwrap();
        let mut el = self.word(15).to_vec();
        el.extend(self.word(z.len() as u32));
        el.extend(z);
        el
    }
}

/// The parts of an SVHN file before assembly, so that the generator can damage each.
#[derive(Clone)]
struct Svhn {
    mat: Mat,
    /// (name, class, dims, data type, data) of each variable.
    vars: Vec<(String, u32, Vec<u32>, u32, Vec<u8>)>,
    compress: bool,
}

impl Svhn {
    fn new(labels: &[u8], little: bool, compress: bool, y_double: bool) -> Svhn {
        let n = labels.len() as u32;
        let x: Vec<u8> = (0..labels.len() * 3072).map(|k| (k * 11 % 256) as u8).collect();
        let y = if y_double {
            (6, 9, labels.iter().flat_map(|&l| if little { f64::from(l).to_le_bytes() } else { f64::from(l).to_be_bytes() }).collect())
        } else {
            (6, 2, labels.to_vec()) // MATLAB saves small-integer doubles as miUINT8
        };
        Svhn {
            mat: Mat { little },
            vars: vec![("X".into(), 9, vec![32, 32, 3, n], 2, x), ("y".into(), y.0, vec![n, 1], y.1, y.2)],
            compress,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut f = self.mat.header();
        for (name, class, dims, dt, data) in &self.vars {
            let el = self.mat.matrix(name, *class, dims, *dt, data);
            f.extend(if self.compress { self.mat.compressed(&el) } else { el });
        }
        f
    }
}

fn svhn_templates() -> Vec<Svhn> {
    vec![
        Svhn::new(&[10, 3], true, false, true),
        Svhn::new(&[1], true, true, false),
        Svhn::new(&[7, 10], false, false, true),
        Svhn::new(&[2], false, true, true),
    ]
}

pub fn svhn_seeds() -> Vec<Vec<u8>> {
    svhn_templates().iter().map(Svhn::bytes).collect()
}

/// An SVHN file with a damaged variable (dimensions, class, data type, name, data length),
/// a damaged element inside a compressed one, a damaged file header, or byte havoc.
pub fn svhn_generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let templates = svhn_templates();
    let mut s = rng.pick(&templates).clone();
    let bytes = match rng.below(10) {
        0..=5 => {
            let var = rng.below(s.vars.len());
            let (name, class, dims, dt, data) = &mut s.vars[var];
            match rng.below(7) {
                0 => {
                    let i = rng.below(dims.len());
                    dims[i] = near(rng, u64::from(dims[i])) as u32;
                }
                1 => {
                    dims.truncate(rng.below(dims.len() + 1));
                    dims.extend((0..rng.below(3)).map(|_| *rng.pick(INTERESTING) as u32));
                }
                2 => *class = rng.below(20) as u32,
                3 => *dt = rng.below(20) as u32,
                4 => *name = rng.pick(&["", "x", "Y", "X", "y", "longer_name", "\u{e9}"]).to_string(),
                5 => data.truncate(rng.below(data.len() + 1)),
                _ => s.vars.push(s.vars[var].clone()),
            }
            s.bytes()
        }
        6 => {
            // Damage inside the compressed stream's content, which only zlib protects.
            s.compress = false;
            let mut plain = s.bytes().split_off(128);
            havoc(rng, &mut plain, &[], 0);
            let mut f = s.mat.header();
            f.extend(s.mat.compressed(&plain));
            f
        }
        7 => {
            let mut f = s.bytes();
            let at = *rng.pick(&[116usize, 124, 126, 128, 132, 136, 140, 144, 148]);
            put_int(&mut f, at, 4, *rng.pick(INTERESTING), rng.chance(1, 2));
            f
        }
        _ => {
            let mut f = rng.pick(seeds).clone();
            havoc(rng, &mut f, seeds, 200);
            f
        }
    };
    vec![(SVHN_FILE.into(), bytes)]
}

pub fn svhn_exec(dir: &Path, v: &mut Verdicts) {
    if let Some(d) = v.file(load_from_dir(DatasetName::Svhn, Split::Test, dir), dir) {
        check_dataset(&d);
    }
}
