//! Image-classification datasets (MNIST, Fashion-MNIST, CIFAR-10, SVHN) as flat NCHW `f32`
//! tensors in [0, 1], the same values PyTorch's `ToTensor` gives, so that networks trained
//! elsewhere see identical inputs here.
//!
//! Files are looked up locally first (see [`load`] for the order) and downloaded, with a
//! SHA-256 check, only when no local copy exists.

mod cifar;
mod download;
mod idx;
mod lookup;
mod svhn;
#[cfg(test)]
mod testutil;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The datasets ironbound knows how to read and fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetName {
    Mnist,
    FashionMnist,
    Cifar10,
    Svhn,
}

impl DatasetName {
    pub const ALL: [DatasetName; 4] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Svhn,
    ];

    /// Canonical name: used on the command line, in messages and as the folder name on disk.
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Svhn => "svhn",
        }
    }

    /// Shape of one image as (channels, height, width).
    pub fn input_shape(&self) -> [usize; 3] {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => [1, 28, 28],
            DatasetName::Cifar10 | DatasetName::Svhn => [3, 32, 32],
        }
    }

    /// Number of classes (all four datasets have ten).
    pub fn num_classes(&self) -> usize {
        10
    }

    /// Human-readable class names, indexed by label, for reports.
    pub fn class_names(&self) -> [&'static str; 10] {
        match self {
            DatasetName::Mnist | DatasetName::Svhn => {
                ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
            }
            DatasetName::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            DatasetName::Cifar10 => [
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(DatasetName::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetName::Cifar10),
            "svhn" => Ok(DatasetName::Svhn),
            _ => Err(Error::input(format!(
                "unknown dataset '{s}'; valid names: mnist, fashion-mnist, cifar10, svhn"
            ))),
        }
    }
}

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(Error::input(format!(
                "unknown split '{s}'; valid splits: train, test"
            ))),
        }
    }
}

/// A whole split in memory. `images` holds `len() * C*H*W` values in [0, 1] (byte / 255),
/// image-major then channel, row, column (NCHW), like a stacked PyTorch `ToTensor` batch.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    pub name: DatasetName,
    pub split: Split,
    /// (C, H, W) of one image.
    pub shape: [usize; 3],
    pub images: Vec<f32>,
    /// One label per image, in 0..10.
    pub labels: Vec<u8>,
}

impl fmt::Debug for Dataset {
    // The pixel vector is megabytes long; print a summary instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("split", &self.split)
            .field("shape", &self.shape)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// Builds a dataset from raw parts, checking that sizes and labels agree, so code that
    /// makes datasets by hand (tests, synthetic data) gets the same guarantees as [`load`].
    pub fn from_parts(
        name: DatasetName,
        split: Split,
        images: Vec<f32>,
        labels: Vec<u8>,
    ) -> Result<Dataset> {
        let shape = name.input_shape();
        let sample = shape.iter().product::<usize>();
        if images.len() != labels.len() * sample {
            return Err(Error::input(format!(
                "{name}: {} image values for {} labels, expected {} ({} per image)",
                images.len(),
                labels.len(),
                labels.len() * sample,
                sample
            )));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= 10)
        {
            return Err(Error::input(format!(
                "{name}: label {l} at index {i} is not in 0..10"
            )));
        }
        Ok(Dataset {
            name,
            split,
            shape,
            images,
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: C*H*W.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pixels of image `i` in CHW order. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let s = self.sample_len();
        &self.images[i * s..(i + 1) * s]
    }

    /// Pixels of image `i`, or `None` when out of range.
    pub fn get(&self, i: usize) -> Option<(&[f32], u8)> {
        let s = self.sample_len();
        let label = *self.labels.get(i)?;
        Some((self.images.get(i * s..(i + 1) * s)?, label))
    }

    /// Keeps only the first `n` images (no-op when `n >= len()`), e.g. for `--limit`.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.images.truncate(n * self.sample_len());
        self.labels.truncate(n);
    }

    /// The images at `indices`, in that order (repeats allowed). Panics on an index
    /// `>= len()`; use [`Dataset::try_subset`] for indices that come from the user.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        match self.try_subset(indices) {
            Ok(d) => d,
            Err(e) => panic!("Dataset::subset: {e}"),
        }
    }

    /// Like [`Dataset::subset`] but returns `InvalidInput` for an out-of-range index.
    pub fn try_subset(&self, indices: &[usize]) -> Result<Dataset> {
        let s = self.sample_len();
        let mut images = Vec::with_capacity(indices.len() * s);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let (img, label) = self.get(i).ok_or_else(|| {
                Error::input(format!(
                    "index {i} out of range: {} {} has {} images",
                    self.name,
                    self.split,
                    self.len()
                ))
            })?;
            images.extend_from_slice(img);
            labels.push(label);
        }
        Ok(Dataset {
            name: self.name,
            split: self.split,
            shape: self.shape,
            images,
            labels,
        })
    }
}

/// Where to look for and put dataset files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOptions {
    /// Searched first (the CLI's `--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Download when no local copy is found. Default: true.
    pub download: bool,
    /// Where downloads go. Default: `$IRONBOUND_DATA`, else `$XDG_CACHE_HOME/ironbound`,
    /// else `~/.cache/ironbound`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            data_dir: None,
            download: true,
            cache_dir: None,
        }
    }
}

/// Loads one split of a dataset.
///
/// Lookup order: `opts.data_dir`, `$IRONBOUND_DATA`, `/usr/share/datasets` (Debian's
/// `dataset-*` packages), the user cache (`$XDG_CACHE_HOME/ironbound`, `~/.cache/ironbound`)
/// and the download cache dir; in each root `R` both `R/<name>/` and `R/` itself are tried.
/// If nothing is found and `opts.download` is set, the official files are downloaded
/// (base URL overridable with `$IRONBOUND_MIRROR`) and verified by SHA-256. Files that are
/// found but corrupt give `InvalidFile` rather than falling through to the next place.
pub fn load(name: DatasetName, split: Split, opts: &DataOptions) -> Result<Dataset> {
    lookup::load_with(name, split, &lookup::Search::from_process(opts))
}

/// Loads one split from `dir/<name>/` or `dir/` only: no other place, no download.
pub fn load_from_dir(name: DatasetName, split: Split, dir: &Path) -> Result<Dataset> {
    let search = lookup::Search {
        roots: vec![lookup::Root {
            dir: dir.to_path_buf(),
            origin: "given directory",
        }],
        download: false,
        cache_dir: None,
        mirror: None,
    };
    lookup::load_with(name, split, &search)
}

/// Turns bytes into floats exactly as PyTorch's `ToTensor` does (`byte as f32 / 255`).
fn to_unit(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.iter().map(|&b| f32::from(b) / 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_display_canonically() {
        for (s, n) in [
            ("mnist", DatasetName::Mnist),
            ("MNIST", DatasetName::Mnist),
            ("fashion-mnist", DatasetName::FashionMnist),
            ("fashion_mnist", DatasetName::FashionMnist),
            ("fmnist", DatasetName::FashionMnist),
            ("cifar10", DatasetName::Cifar10),
            ("cifar-10", DatasetName::Cifar10),
            ("svhn", DatasetName::Svhn),
        ] {
            assert_eq!(s.parse::<DatasetName>().unwrap(), n, "{s}");
        }
        for n in DatasetName::ALL {
            assert_eq!(n.to_string().parse::<DatasetName>().unwrap(), n);
        }
        assert_eq!(DatasetName::FashionMnist.to_string(), "fashion-mnist");
        let err = "imagenet".parse::<DatasetName>().unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)));
        let msg = err.to_string();
        for n in ["mnist", "fashion-mnist", "cifar10", "svhn", "imagenet"] {
            assert!(msg.contains(n), "{msg}");
        }
    }

    #[test]
    fn shapes_and_classes() {
        assert_eq!(DatasetName::Mnist.input_shape(), [1, 28, 28]);
        assert_eq!(DatasetName::FashionMnist.input_shape(), [1, 28, 28]);
        assert_eq!(DatasetName::Cifar10.input_shape(), [3, 32, 32]);
        assert_eq!(DatasetName::Svhn.input_shape(), [3, 32, 32]);
        for n in DatasetName::ALL {
            assert_eq!(n.num_classes(), 10);
        }
        assert_eq!(DatasetName::FashionMnist.class_names()[9], "Ankle boot");
    }

    #[test]
    fn split_parses() {
        assert_eq!("train".parse::<Split>().unwrap(), Split::Train);
        assert_eq!("Test".parse::<Split>().unwrap(), Split::Test);
        assert_eq!(Split::Test.to_string(), "test");
        let err = "val".parse::<Split>().unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("train, test"));
    }

    fn tiny() -> Dataset {
        // 3 MNIST-shaped images whose pixels all equal their index.
        let s = 28 * 28;
        let images: Vec<f32> = (0..3)
            .flat_map(|i| std::iter::repeat_n(i as f32, s))
            .collect();
        Dataset::from_parts(DatasetName::Mnist, Split::Test, images, vec![4, 5, 6]).unwrap()
    }

    #[test]
    fn dataset_accessors() {
        let mut d = tiny();
        assert_eq!(d.len(), 3);
        assert!(!d.is_empty());
        assert_eq!(d.sample_len(), 784);
        assert_eq!(d.image(2).len(), 784);
        assert!(d.image(2).iter().all(|&v| v == 2.0));
        assert!(d.get(3).is_none());
        assert_eq!(d.get(1).unwrap().1, 5);

        let s = d.subset(&[2, 0, 2]);
        assert_eq!(s.labels, vec![6, 4, 6]);
        assert!(s.image(0).iter().all(|&v| v == 2.0));
        assert!(s.image(1).iter().all(|&v| v == 0.0));
        assert_eq!(s.images.len(), 3 * 784);
        let err = d.try_subset(&[0, 3]).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("index 3"));

        d.truncate(10);
        assert_eq!(d.len(), 3);
        d.truncate(1);
        assert_eq!(d.len(), 1);
        assert_eq!(d.images.len(), 784);
        d.truncate(0);
        assert!(d.is_empty() && d.images.is_empty());
        assert!(format!("{d:?}").contains("len: 0"));
    }

    #[test]
    #[should_panic(expected = "index 7 out of range")]
    fn subset_panics_out_of_range() {
        tiny().subset(&[7]);
    }

    #[test]
    fn from_parts_checks_sizes_and_labels() {
        assert!(
            Dataset::from_parts(DatasetName::Mnist, Split::Test, vec![0.0; 783], vec![1]).is_err()
        );
        let err = Dataset::from_parts(DatasetName::Mnist, Split::Test, vec![0.0; 784], vec![10])
            .unwrap_err();
        assert!(err.to_string().contains("label 10"));
    }

    #[test]
    fn default_options_download() {
        let o = DataOptions::default();
        assert!(o.download && o.data_dir.is_none() && o.cache_dir.is_none());
    }

    #[test]
    fn to_unit_matches_torch_scaling() {
        let v: Vec<f32> = to_unit(&[0, 1, 128, 255]).collect();
        assert_eq!(v, vec![0.0, 1.0 / 255.0, 128.0 / 255.0, 1.0]);
    }
}
