//! Finding dataset files on disk, in the order fixed by the CLI contract, and falling back
//! to a download. The environment is read once into [`Search`] so tests can build one
//! without touching process-wide variables.

use std::path::{Path, PathBuf};

use super::{cifar, download, idx, svhn, DataOptions, Dataset, DatasetName, Split};
use crate::error::{Error, Result};

/// Debian's `dataset-*` packages install under here (e.g. `dataset-fashion-mnist`).
const SYSTEM_DATASETS: &str = "/usr/share/datasets";

/// One directory to search, with where it came from (for messages).
#[derive(Clone, Debug)]
pub(crate) struct Root {
    pub dir: PathBuf,
    pub origin: &'static str,
}

/// Everything the lookup needs, resolved from options and environment.
#[derive(Clone, Debug)]
pub(crate) struct Search {
    /// Searched in order; each as `R/<name>/` then `R/`.
    pub roots: Vec<Root>,
    pub download: bool,
    /// Downloads go to `<cache_dir>/<name>/`.
    pub cache_dir: Option<PathBuf>,
    /// Replaces the official base URLs: files are fetched from `<mirror>/<name>/<file>`.
    pub mirror: Option<String>,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Search {
    pub fn from_process(opts: &DataOptions) -> Search {
        let env_data = env_path("IRONBOUND_DATA");
        let xdg_cache = env_path("XDG_CACHE_HOME").map(|d| d.join("ironbound"));
        let home_cache = env_path("HOME").map(|h| h.join(".cache").join("ironbound"));
        let cache_dir = opts
            .cache_dir
            .clone()
            .or_else(|| env_data.clone())
            .or_else(|| xdg_cache.clone())
            .or_else(|| home_cache.clone());
        let mirror = std::env::var("IRONBOUND_MIRROR")
            .ok()
            .filter(|m| !m.trim().is_empty());
        Search::new(opts, env_data, xdg_cache, home_cache, cache_dir, mirror)
    }

    fn new(
        opts: &DataOptions,
        env_data: Option<PathBuf>,
        xdg_cache: Option<PathBuf>,
        home_cache: Option<PathBuf>,
        cache_dir: Option<PathBuf>,
        mirror: Option<String>,
    ) -> Search {
        let candidates = [
            (opts.data_dir.clone(), "--data-dir"),
            (env_data, "$IRONBOUND_DATA"),
            (Some(PathBuf::from(SYSTEM_DATASETS)), "system datasets"),
            (xdg_cache, "user cache"),
            (home_cache, "user cache"),
            (cache_dir.clone(), "download cache"),
        ];
        let mut roots: Vec<Root> = Vec::new();
        for (dir, origin) in candidates {
            if let Some(dir) = dir {
                if !roots.iter().any(|r| r.dir == dir) {
                    roots.push(Root { dir, origin });
                }
            }
        }
        Search {
            roots,
            download: opts.download,
            cache_dir,
            mirror,
        }
    }
}

/// The files making up one split, each with acceptable file names in order of preference.
fn required_files(name: DatasetName, split: Split) -> Vec<Vec<String>> {
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => {
            let prefix = match split {
                Split::Train => "train",
                Split::Test => "t10k",
            };
            ["images-idx3-ubyte", "labels-idx1-ubyte"]
                .iter()
                .map(|kind| {
                    let base = format!("{prefix}-{kind}");
                    vec![format!("{base}.gz"), base]
                })
                .collect()
        }
        DatasetName::Cifar10 => cifar::batch_files(split)
            .iter()
            .map(|f| vec![f.to_string()])
            .collect(),
        DatasetName::Svhn => vec![vec![svhn::file_name(split).to_string()]],
    }
}

/// Short list of the files of a split, for messages.
pub(crate) fn describe_files(name: DatasetName, split: Split) -> String {
    let files: Vec<String> = required_files(name, split)
        .into_iter()
        .filter_map(|alts| alts.into_iter().next())
        .collect();
    files.join(", ")
}

/// Directories tried inside one root, in order.
fn candidate_dirs(name: DatasetName, root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join(name.as_str())];
    // torchvision's layout, so an existing torchvision data folder works as a root
    match name {
        DatasetName::Mnist => dirs.push(root.join("MNIST").join("raw")),
        DatasetName::FashionMnist => dirs.push(root.join("FashionMNIST").join("raw")),
        _ => {}
    }
    dirs.push(root.to_path_buf());
    if name == DatasetName::Cifar10 {
        // the tarball unpacks to cifar-10-batches-bin/; accept it inside each candidate
        dirs = dirs
            .into_iter()
            .flat_map(|d| [d.join(cifar::BATCH_DIR), d])
            .collect();
    }
    dirs
}

/// MNIST and Fashion-MNIST use the same file names, so a folder named for one must not be
/// read as the other when the files sit directly in it.
fn named_for_other_dataset(name: DatasetName, dir: &Path) -> bool {
    let last = |p: &Path| {
        p.file_name()
            .map(|s| s.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let mut folder = last(dir);
    if folder == "raw" {
        folder = dir.parent().map(last).unwrap_or_default();
    }
    let squashed: String = folder
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    match name {
        DatasetName::Mnist => squashed.contains("fashion") || squashed == "fmnist",
        DatasetName::FashionMnist => squashed == "mnist",
        _ => false,
    }
}

/// Outcome of looking in one directory.
enum Probe {
    Found(Vec<PathBuf>),
    /// Some files present, others not: worth telling the user.
    Incomplete(Vec<String>),
    Absent,
}

fn probe(name: DatasetName, split: Split, dir: &Path) -> Probe {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for alternatives in required_files(name, split) {
        match alternatives
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        {
            Some(p) => found.push(p),
            None => missing.push(alternatives.join(" or ")),
        }
    }
    match (found.is_empty(), missing.is_empty()) {
        (_, true) => Probe::Found(found),
        (true, false) => Probe::Absent,
        (false, false) => Probe::Incomplete(missing),
    }
}

fn read_files(name: DatasetName, split: Split, files: &[PathBuf]) -> Result<Dataset> {
    let [_, h, w] = name.input_shape();
    let (images, labels) = match (name, files) {
        (DatasetName::Mnist | DatasetName::FashionMnist, [images, labels]) => {
            idx::load(images, labels, h, w)?
        }
        (DatasetName::Cifar10, batches) => cifar::load(batches)?,
        (DatasetName::Svhn, [mat]) => svhn::load(mat)?,
        _ => {
            return Err(Error::internal(format!(
                "{name}: unexpected file list {files:?}"
            )))
        }
    };
    Dataset::from_parts(name, split, images, labels)
}

/// Looks through `search.roots`, then downloads; see [`super::load`].
pub(crate) fn load_with(name: DatasetName, split: Split, search: &Search) -> Result<Dataset> {
    let mut searched = Vec::new();
    for root in &search.roots {
        let mut notes = Vec::new();
        for dir in candidate_dirs(name, &root.dir) {
            match probe(name, split, &dir) {
                Probe::Found(_) if dir == root.dir && named_for_other_dataset(name, &dir) => {
                    notes.push(format!(
                        "{} has files of that name but its name says it is another dataset",
                        dir.display()
                    ));
                }
                Probe::Found(files) => {
                    tracing::info!("loading {name} {split} from {}", dir.display());
                    return read_files(name, split, &files);
                }
                Probe::Incomplete(missing) => notes.push(format!(
                    "{} is incomplete: missing {}",
                    dir.display(),
                    missing.join(", ")
                )),
                Probe::Absent => {}
            }
        }
        let mut line = format!("{} ({}): not found", root.dir.display(), root.origin);
        if !notes.is_empty() {
            line = format!("{line}; {}", notes.join("; "));
        }
        searched.push(line);
    }

    let download_note = if !search.download {
        "Downloading was disabled.".to_string()
    } else {
        match &search.cache_dir {
            None => "No download cache directory (set IRONBOUND_DATA or HOME).".to_string(),
            Some(cache) => {
                let dir = cache.join(name.as_str());
                match download::download(name, split, &dir, search.mirror.as_deref()) {
                    Ok(()) => match probe(name, split, &dir) {
                        Probe::Found(files) => return read_files(name, split, &files),
                        _ => format!("Download into {} did not produce the files.", dir.display()),
                    },
                    Err(e) => format!("Download into {} failed: {e}", dir.display()),
                }
            }
        }
    };
    Err(Error::DatasetUnavailable(unavailable_message(
        name,
        split,
        &searched,
        &download_note,
        search.mirror.as_deref(),
    )))
}

fn unavailable_message(
    name: DatasetName,
    split: Split,
    searched: &[String],
    download_note: &str,
    mirror: Option<&str>,
) -> String {
    // One line (the CLI prints every error on one line): sentences, and "; " between the
    // places searched and between the ways to fix it.
    let mut fixes = vec![format!(
        "put the files in DIR/{name}/ and pass --data-dir DIR (or set IRONBOUND_DATA=DIR)"
    )];
    if name == DatasetName::FashionMnist {
        fixes.push("on Debian/Ubuntu: apt install dataset-fashion-mnist".into());
    }
    let urls: Vec<String> = download::remote_files(name, split)
        .iter()
        .map(|r| download::url_for(name, r, mirror))
        .collect();
    fixes.push(if name == DatasetName::Cifar10 {
        format!(
            "download {} and unpack it in DIR/{name}/ (tar xzf)",
            urls.join(" ")
        )
    } else {
        format!("download {} into DIR/{name}/", urls.join(" "))
    });
    fixes.push(
        "run again with network access so ironbound can download them \
         (set IRONBOUND_MIRROR to use a mirror)"
            .into(),
    );
    let note = download_note.trim_end_matches('.');
    let msg = format!(
        "dataset {name} ({split} split) not found. Needed: {}. Searched (in each place both \
         <dir>/{name}/ and <dir>/ itself): {}. {note}. To fix, do one of: {}.",
        describe_files(name, split),
        searched.join("; "),
        fixes.join("; or "),
    );
    // The download note carries other crates' error text, which may hold newlines.
    msg.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    fn search(roots: &[(&Path, &'static str)]) -> Search {
        Search {
            roots: roots
                .iter()
                .map(|(d, o)| Root {
                    dir: d.to_path_buf(),
                    origin: o,
                })
                .collect(),
            download: false,
            cache_dir: None,
            mirror: None,
        }
    }

    fn root_dirs(s: &Search) -> Vec<String> {
        s.roots.iter().map(|r| r.dir.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn order_puts_data_dir_first_and_cache_last() {
        let opts = DataOptions {
            data_dir: Some("/d".into()),
            download: true,
            cache_dir: Some("/c".into()),
        };
        let s = Search::new(
            &opts,
            Some("/e".into()),
            Some("/x/ironbound".into()),
            Some("/h/.cache/ironbound".into()),
            Some("/c".into()),
            None,
        );
        let dirs = root_dirs(&s);
        assert_eq!(
            dirs,
            [
                "/d",
                "/e",
                SYSTEM_DATASETS,
                "/x/ironbound",
                "/h/.cache/ironbound",
                "/c"
            ]
        );
        // duplicates collapse, keeping the earliest position
        let s = Search::new(
            &opts,
            Some("/d".into()),
            None,
            None,
            Some("/d".into()),
            None,
        );
        let dirs = root_dirs(&s);
        assert_eq!(dirs, ["/d", SYSTEM_DATASETS]);
    }

    #[test]
    fn data_dir_beats_env_var() {
        let a = TempDir::new("lookup-a");
        let b = TempDir::new("lookup-b");
        write_idx_split(&a.path().join("mnist"), "t10k", &[1, 1], true);
        write_idx_split(&b.path().join("mnist"), "t10k", &[2, 2, 2], false);
        let s = search(&[(a.path(), "--data-dir"), (b.path(), "$IRONBOUND_DATA")]);
        let d = load_with(DatasetName::Mnist, Split::Test, &s).unwrap();
        assert_eq!(d.labels, vec![1, 1]);
        // when the first root lacks the dataset, the second one is used
        std::fs::remove_dir_all(a.path().join("mnist")).unwrap();
        let d = load_with(DatasetName::Mnist, Split::Test, &s).unwrap();
        assert_eq!(d.labels, vec![2, 2, 2]);
        // public entry point with data_dir
        let opts = DataOptions {
            data_dir: Some(b.path().into()),
            download: false,
            cache_dir: None,
        };
        assert_eq!(
            super::super::load(DatasetName::Mnist, Split::Test, &opts)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn files_directly_in_root_and_named_subdir_both_work() {
        let root = TempDir::new("lookup-layout");
        write_idx_split(root.path(), "train", &[5, 6], false);
        let s = search(&[(root.path(), "--data-dir")]);
        let d = load_with(DatasetName::FashionMnist, Split::Train, &s).unwrap();
        assert_eq!(
            (d.name, d.split, d.labels.clone()),
            (DatasetName::FashionMnist, Split::Train, vec![5, 6])
        );
        assert_eq!(d.shape, [1, 28, 28]);
        // R/<name>/ is preferred over R/
        write_idx_split(&root.path().join("fashion-mnist"), "train", &[7], true);
        let d = load_with(DatasetName::FashionMnist, Split::Train, &s).unwrap();
        assert_eq!(d.labels, vec![7]);

        // CIFAR: R/cifar10/cifar-10-batches-bin/, R/cifar10/ and R/ all work
        for sub in ["cifar10/cifar-10-batches-bin", "cifar10", ""] {
            let r = TempDir::new("lookup-cifar");
            write(
                &r.path().join(sub).join("test_batch.bin"),
                &cifar_batch(&[4, 2]),
            );
            let d = load_with(
                DatasetName::Cifar10,
                Split::Test,
                &search(&[(r.path(), "x")]),
            )
            .unwrap();
            assert_eq!(d.labels, vec![4, 2], "layout {sub:?}");
            assert_eq!(d.images.len(), 2 * 3072);
        }
        // torchvision layout
        let r = TempDir::new("lookup-tv");
        write_idx_split(&r.path().join("MNIST/raw"), "t10k", &[3], false);
        let d = load_with(DatasetName::Mnist, Split::Test, &search(&[(r.path(), "x")])).unwrap();
        assert_eq!(d.labels, vec![3]);
    }

    #[test]
    fn cifar_train_reads_all_five_batches_in_order() {
        let r = TempDir::new("lookup-cifar-train");
        for i in 1..=5u8 {
            write(
                &r.path().join(format!("cifar10/data_batch_{i}.bin")),
                &cifar_batch(&[i, i]),
            );
        }
        let d = load_with(
            DatasetName::Cifar10,
            Split::Train,
            &search(&[(r.path(), "x")]),
        )
        .unwrap();
        assert_eq!(d.labels, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        std::fs::remove_file(r.path().join("cifar10/data_batch_4.bin")).unwrap();
        let err = load_with(
            DatasetName::Cifar10,
            Split::Train,
            &search(&[(r.path(), "x")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("missing data_batch_4.bin"),
            "{err}"
        );
    }

    #[test]
    fn mnist_does_not_read_a_fashion_folder() {
        let r = TempDir::new("lookup-conflict");
        let fashion = r.path().join("fashion-mnist");
        write_idx_split(&fashion, "t10k", &[9], true);
        let err = load_with(
            DatasetName::Mnist,
            Split::Test,
            &search(&[(&fashion, "--data-dir")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("another dataset"), "{err}");
        // while Fashion-MNIST itself loads from that folder
        let d = load_with(
            DatasetName::FashionMnist,
            Split::Test,
            &search(&[(&fashion, "x")]),
        )
        .unwrap();
        assert_eq!(d.labels, vec![9]);
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_fallthrough() {
        let a = TempDir::new("lookup-corrupt");
        let b = TempDir::new("lookup-good");
        write_idx_split(&a.path().join("mnist"), "t10k", &[1], false);
        let bad = a.path().join("mnist/t10k-labels-idx1-ubyte");
        write(&bad, &idx_labels(&[1])[..5]);
        write_idx_split(&b.path().join("mnist"), "t10k", &[2], false);
        let s = search(&[(a.path(), "--data-dir"), (b.path(), "x")]);
        match load_with(DatasetName::Mnist, Split::Test, &s) {
            Err(Error::InvalidFile { path, .. }) => assert_eq!(path, bad),
            other => panic!("expected InvalidFile, got {other:?}"),
        }
    }

    #[test]
    fn not_found_lists_every_place_and_what_to_do() {
        let a = TempDir::new("lookup-empty-a");
        let b = TempDir::new("lookup-empty-b");
        // a half-present dataset is reported as such
        write(
            &b.path().join("fashion-mnist/t10k-images-idx3-ubyte.gz"),
            b"x",
        );
        let s = search(&[(a.path(), "--data-dir"), (b.path(), "$IRONBOUND_DATA")]);
        let err = load_with(DatasetName::FashionMnist, Split::Test, &s).unwrap_err();
        assert!(matches!(err, Error::DatasetUnavailable(_)));
        let msg = err.to_string();
        for needle in [
            a.path().to_str().unwrap(),
            b.path().to_str().unwrap(),
            "--data-dir",
            "$IRONBOUND_DATA",
            "missing t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte",
            "apt install dataset-fashion-mnist",
            "Downloading was disabled",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
        ] {
            assert!(msg.contains(needle), "message lacks {needle:?}:\n{msg}");
        }
        assert!(!msg.contains('\n'), "one line: {msg}");
        let err =
            load_with(DatasetName::Svhn, Split::Train, &search(&[(a.path(), "x")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("train_32x32.mat") && !msg.contains("apt install"),
            "{msg}"
        );
    }

    #[test]
    fn failed_download_is_reported_with_the_places() {
        let a = TempDir::new("lookup-dl-fail");
        let cache = TempDir::new("lookup-dl-cache");
        let mut s = search(&[(a.path(), "--data-dir")]);
        s.download = true;
        s.cache_dir = Some(cache.path().to_path_buf());
        s.mirror = Some(format!(
            "file://{}",
            a.path().join("no-such-mirror").display()
        ));
        let err = load_with(DatasetName::Mnist, Split::Test, &s).unwrap_err();
        assert!(matches!(err, Error::DatasetUnavailable(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("failed")
                && msg.contains("no-such-mirror/mnist/t10k-images-idx3-ubyte.gz"),
            "{msg}"
        );
        assert!(msg.contains(a.path().to_str().unwrap()), "{msg}");
        // nothing half-written is left in the cache
        let left: Vec<_> = std::fs::read_dir(cache.path().join("mnist"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn download_through_file_mirror_loads_real_mnist_test() {
        let src = Path::new("/work/shared/data/mnist");
        if !src.join("t10k-images-idx3-ubyte.gz").is_file() {
            eprintln!("skipping: {} not present", src.display());
            return;
        }
        let mirror = TempDir::new("lookup-mirror");
        for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            write(
                &mirror.path().join("mnist").join(f),
                &std::fs::read(src.join(f)).unwrap(),
            );
        }
        let empty = TempDir::new("lookup-mirror-empty");
        let cache = TempDir::new("lookup-mirror-cache");
        let mut s = search(&[(empty.path(), "--data-dir")]);
        s.download = true;
        s.cache_dir = Some(cache.path().to_path_buf());
        s.mirror = Some(format!("file://{}/", mirror.path().display()));
        let d = load_with(DatasetName::Mnist, Split::Test, &s).unwrap();
        assert_eq!(d.len(), 10000);
        assert_eq!(d.labels[0], 7);
        assert!(cache
            .path()
            .join("mnist/t10k-labels-idx1-ubyte.gz")
            .is_file());

        // a mirror serving wrong bytes fails the SHA-256 check
        write(
            &mirror.path().join("mnist/t10k-labels-idx1-ubyte.gz"),
            b"not mnist",
        );
        let cache2 = TempDir::new("lookup-mirror-cache2");
        s.cache_dir = Some(cache2.path().to_path_buf());
        let msg = load_with(DatasetName::Mnist, Split::Test, &s)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("checksum mismatch") && msg.contains(download::MNIST_T10K_LABELS_SHA256),
            "{msg}"
        );
        assert!(!cache2
            .path()
            .join("mnist/t10k-labels-idx1-ubyte.gz")
            .exists());
    }

    #[test]
    fn real_mnist_test_set() {
        let dir = Path::new("/work/shared/data/mnist");
        if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
            eprintln!("skipping: MNIST test set not present at {}", dir.display());
            return;
        }
        let d = super::super::load_from_dir(DatasetName::Mnist, Split::Test, dir).unwrap();
        assert_eq!(d.len(), 10000);
        assert_eq!(d.images.len(), 10000 * 784);
        assert_eq!(d.labels[0], 7);
        assert!(d.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(d.images.contains(&1.0));
        let mut counts = [0usize; 10];
        d.labels.iter().for_each(|&l| counts[usize::from(l)] += 1);
        assert_eq!(
            counts,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
    }

    #[test]
    fn real_fashion_mnist_test_set_from_system_dir() {
        let dir = Path::new(SYSTEM_DATASETS).join("fashion-mnist");
        if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
            eprintln!(
                "skipping: {} not present (apt install dataset-fashion-mnist)",
                dir.display()
            );
            return;
        }
        // found through the system root, with nothing else to search
        let d = load_with(
            DatasetName::FashionMnist,
            Split::Test,
            &search(&[(Path::new(SYSTEM_DATASETS), "system datasets")]),
        )
        .unwrap();
        assert_eq!(d.len(), 10000);
        assert_eq!(
            d.labels[0], 9,
            "first Fashion-MNIST test image is an ankle boot"
        );
        assert!(d.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let mut counts = [0usize; 10];
        d.labels.iter().for_each(|&l| counts[usize::from(l)] += 1);
        assert_eq!(counts, [1000; 10]);
    }
}
