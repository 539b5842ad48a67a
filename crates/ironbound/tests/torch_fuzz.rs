//! The checkpoint reader never panics: random bytes, random pickle opcode streams, and the
//! real fixtures with random byte edits and truncations all end in Ok or one error line.
//! `IRONBOUND_FUZZ_CASES=100000 cargo test -p ironbound --release --test torch_fuzz` runs a
//! long session; the default keeps CI fast.

use ironbound::io::torch::{fit, parse_state_dict};
use ironbound::net::arch::{sequential, L};
use ironbound::tensor::default_device;
use proptest::prelude::*;
use std::path::Path;

const FIXTURES: [&str; 11] = [
    "tiny_zip.pt", "tiny_legacy.pt", "tiny_views.pt", "tiny_views_legacy.pt", "tiny_f64.pt", "tiny_wrapped.pt",
    "tiny_dataparallel.pt", "tiny_list.pt", "tiny_paradox.pt", "tiny_colt.pt", "crown_ibp_e_half.pt",
];

fn cases() -> u32 {
    std::env::var("IRONBOUND_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

fn fixtures() -> &'static Vec<Vec<u8>> {
    static F: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
        FIXTURES.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect()
    })
}

/// Reads `bytes` and, when that works, fits the result to the fixtures' tiny net; every
/// rejection is one line naming the file, as the contract's exit-2 errors are.
fn exercise(bytes: &[u8]) {
    let path = Path::new("fuzz.pt");
    let one_line = |e: ironbound::Error| {
        let msg = e.to_string();
        assert!(msg.contains("fuzz.pt") && !msg.contains(['\n', '\r']), "not a one-line error naming the file: {msg:?}");
    };
    match parse_state_dict(bytes, path) {
        Ok(state) => {
            let spec = sequential([1, 6, 6], &[L::Conv(2, 3, 1, 1), L::Relu, L::Flatten, L::Fc(5), L::Relu, L::Fc(3)]);
            if let Err(e) = fit(&state, &spec, "tiny", None, path, &default_device()) {
                one_line(e);
            }
        }
        Err(e) => one_line(e),
    }
}

#[test]
fn a_storage_key_with_a_newline_is_a_one_line_error() {
    // Found by torch_fuzz: the legacy file's storage key "93874595568720" with its first digit
    // turned into a newline was quoted raw in the error.
    let mut data = fixtures()[1].clone();
    assert_eq!(&data[915..929], b"93874595568720");
    data[915] = b'\n';
    let e = parse_state_dict(&data, Path::new("fuzz.pt")).unwrap_err().to_string();
    assert!(e.contains("'\\n3874595568720'") && !e.contains('\n'), "{e}");
}

/// Values that often sit on a boundary when written over a length or an offset.
const INTERESTING: [u32; 6] = [0, 1, 0x7f, 0xffff, 0x7fff_ffff, 0xffff_ffff];

#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Word(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 0..INTERESTING.len()).prop_map(|(p, w)| Edit::Word(p, w)),
    ]
}

fn apply(data: &mut Vec<u8>, e: &Edit) {
    if data.is_empty() {
        return;
    }
    let n = data.len();
    match *e {
        Edit::Set(p, b) => data[p % n] = b,
        Edit::Insert(p, b) => data.insert(p % (n + 1), b),
        Edit::Delete(p) => {
            data.remove(p % n);
        }
        Edit::Word(p, w) => {
            let p = p % n;
            let bytes = INTERESTING[w].to_le_bytes();
            let end = (p + 4).min(n);
            data[p..end].copy_from_slice(&bytes[..end - p]);
        }
    }
}

/// Opcodes torch's pickles use, with small arguments, so random streams get past the first byte.
fn opcode_stream() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![
        Just(vec![b'(']), Just(vec![b')']), Just(vec![b']']), Just(vec![b'}']), Just(vec![b't']), Just(vec![b'a']),
        Just(vec![b'e']), Just(vec![b's']), Just(vec![b'u']), Just(vec![b'R']), Just(vec![b'b']), Just(vec![b'Q']),
        Just(vec![b'N']), Just(vec![0x85]), Just(vec![0x86]), Just(vec![0x87]), Just(vec![0x88]), Just(vec![0x81]),
        Just(vec![b'0']), Just(vec![b'2']), Just(vec![0x94]), Just(vec![b'.']),
        any::<u8>().prop_map(|k| vec![b'K', k]),
        any::<u8>().prop_map(|k| vec![b'q', k % 8]),
        any::<u8>().prop_map(|k| vec![b'h', k % 8]),
        Just(b"ctorch._utils\n_rebuild_tensor_v2\n".to_vec()),
        Just(b"ctorch\nFloatStorage\n".to_vec()),
        Just(b"ccollections\nOrderedDict\n".to_vec()),
        Just(b"X\x07\x00\x00\x00storage".to_vec()),
        Just(b"X\x01\x00\x00\x000".to_vec()),
        Just(b"X\x08\x00\x00\x000.weight".to_vec()),
    ];
    prop::collection::vec(op, 0..64).prop_map(|ops| {
        let mut v = b"\x80\x02".to_vec();
        v.extend(ops.into_iter().flatten());
        v.push(b'.');
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(prefix in 0usize..3, bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        // Half the inputs start like one of the two layouts, so they reach the parsers.
        let mut data = [&b""[..], b"PK\x03\x04", b"\x80\x02"][prefix].to_vec();
        data.extend(bytes);
        exercise(&data);
    }

    #[test]
    fn random_pickles(main in opcode_stream()) {
        // As the main pickle of a legacy file with no storages.
        let mut data = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}.".to_vec();
        data.extend(&main);
        data.extend(b"\x80\x02].");
        exercise(&data);
    }

    #[test]
    fn edited_and_truncated_fixtures(which in 0..FIXTURES.len(), edits in prop::collection::vec(edit(), 0..6), cut in prop::option::of(any::<usize>())) {
        let mut data = fixtures()[which].clone();
        for e in &edits {
            apply(&mut data, e);
        }
        if let Some(c) = cut {
            data.truncate(c % (data.len() + 1));
        }
        exercise(&data);
    }
}
