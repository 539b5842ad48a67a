//! Downloading the official files, verified by SHA-256, written atomically (temp file in
//! the target folder, then rename) so an interrupted or corrupt download never looks like
//! a dataset.

use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{cifar, DatasetName, Split};
use crate::error::{Error, Result};

const MNIST_BASE: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
const FASHION_BASE: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
const CIFAR_BASE: &str = "https://www.cs.toronto.edu/~kriz/";
const SVHN_BASE: &str = "http://ufldl.stanford.edu/housenumbers/";
const CIFAR_TARBALL: &str = "cifar-10-binary.tar.gz";

/// Exposed for tests that check the mismatch message.
#[cfg(test)]
pub(crate) const MNIST_T10K_LABELS_SHA256: &str =
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6";

/// (dataset, file, SHA-256 of the file as served by the official URL).
///
/// Sources of the sums: MNIST t10k from /work/shared/data/mnist/SHA256SUMS, MNIST train as
/// published by torchvision/TFDS (same bytes as yann.lecun.com); Fashion-MNIST from the
/// zalandoresearch/fashion-mnist README and TFDS (whose MD5s match the README's); CIFAR-10
/// binary tarball and SVHN .mat files from TFDS / torchvision prototype datasets. Note that
/// Debian's dataset-fashion-mnist recompresses the files, so its .gz differ from these.
#[rustfmt::skip]
const TABLE: &[(DatasetName, &str, &str)] = &[
    (DatasetName::Mnist, "train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    (DatasetName::Mnist, "train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    (DatasetName::Mnist, "t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    (DatasetName::Mnist, "t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    (DatasetName::FashionMnist, "train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    (DatasetName::FashionMnist, "train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    (DatasetName::FashionMnist, "t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    (DatasetName::FashionMnist, "t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    (DatasetName::Cifar10, CIFAR_TARBALL, "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    (DatasetName::Svhn, "train_32x32.mat", "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8"),
    (DatasetName::Svhn, "test_32x32.mat", "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"),
];

/// One file to fetch. Owned strings so tests can inject their own sums.
#[derive(Clone, Debug)]
pub(crate) struct RemoteFile {
    pub file: String,
    /// Official URL, used unless a mirror is set.
    pub url: String,
    pub sha256: String,
}

fn base_url(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Mnist => MNIST_BASE,
        DatasetName::FashionMnist => FASHION_BASE,
        DatasetName::Cifar10 => CIFAR_BASE,
        DatasetName::Svhn => SVHN_BASE,
    }
}

/// The files to download for one split.
pub(crate) fn remote_files(name: DatasetName, split: Split) -> Vec<RemoteFile> {
    let prefix = match (name, split) {
        (DatasetName::Cifar10, _) => CIFAR_TARBALL, // one archive holds both splits
        (DatasetName::Svhn, Split::Train) => "train_",
        (DatasetName::Svhn, Split::Test) => "test_",
        (_, Split::Train) => "train-",
        (_, Split::Test) => "t10k-",
    };
    TABLE
        .iter()
        .filter(|(n, file, _)| *n == name && file.starts_with(prefix))
        .map(|(_, file, sha)| RemoteFile {
            file: file.to_string(),
            url: format!("{}{file}", base_url(name)),
            sha256: sha.to_string(),
        })
        .collect()
}

/// The official URL, or `<mirror>/<name>/<file>` when a mirror is set.
pub(crate) fn url_for(name: DatasetName, remote: &RemoteFile, mirror: Option<&str>) -> String {
    match mirror {
        Some(m) => format!("{}/{name}/{}", m.trim_end_matches('/'), remote.file),
        None => remote.url.clone(),
    }
}

/// Downloads one split into `dir` (the cache's `<name>/` folder).
pub(crate) fn download(
    name: DatasetName,
    split: Split,
    dir: &Path,
    mirror: Option<&str>,
) -> Result<()> {
    install(name, &remote_files(name, split), dir, mirror)
}

/// Fetches each file unless a copy with the right sum is already there; unpacks CIFAR.
fn install(
    name: DatasetName,
    files: &[RemoteFile],
    dir: &Path,
    mirror: Option<&str>,
) -> Result<()> {
    for remote in files {
        let dest = dir.join(&remote.file);
        let have = dest.is_file() && sha256_file(&dest).is_ok_and(|s| s == remote.sha256);
        if !have {
            fetch(&url_for(name, remote, mirror), &remote.sha256, &dest)?;
        }
        if name == DatasetName::Cifar10 {
            extract_cifar(&dest, &dir.join(cifar::BATCH_DIR))?;
            // the batches are all we read; the 170 MB archive is not worth keeping
            let _ = fs::remove_file(&dest);
        }
    }
    Ok(())
}

/// A unique sibling of `dest` to write into before the atomic rename.
fn temp_path(dest: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{file}.{}-{n}.part", std::process::id()))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn open_url(url: &str) -> Result<Box<dyn Read>> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        let file =
            File::open(path).map_err(|e| Error::internal(format!("cannot read {url}: {e}")))?;
        return Ok(Box::new(file));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::input(format!(
            "unsupported URL '{url}': only http://, https:// and file:// are supported"
        )));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .get(url)
        // the files are already gzipped; a transparent decode would break the checksum
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(|e| Error::internal(format!("cannot download {url}: {e}")))?;
    Ok(Box::new(response.into_body().into_reader()))
}

/// Streams `url` into `tmp` and returns the SHA-256 of what was received.
fn fetch_to(url: &str, tmp: &Path) -> Result<String> {
    let mut reader = open_url(url)?;
    let write_err =
        |e: std::io::Error| Error::internal(format!("cannot write {}: {e}", tmp.display()));
    let mut file = File::create(tmp).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::internal(format!("download of {url} failed: {e}"))),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(write_err)?;
    }
    file.sync_all().map_err(write_err)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Downloads `url` (http, https or file) to `dest` if its SHA-256 is `expected_sha256`.
/// On any failure, including a checksum mismatch, nothing is left at `dest` or beside it.
pub(crate) fn fetch(url: &str, expected_sha256: &str, dest: &Path) -> Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    tracing::info!("downloading {url} to {}", dest.display());
    let tmp = temp_path(dest);
    let result = fetch_to(url, &tmp).and_then(|actual| {
        if actual.eq_ignore_ascii_case(expected_sha256) {
            fs::rename(&tmp, dest).map_err(|e| {
                Error::internal(format!("cannot move download into {}: {e}", dest.display()))
            })
        } else {
            Err(Error::internal(format!(
                "checksum mismatch for {url}: expected sha256 {expected_sha256}, got {actual}"
            )))
        }
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Unpacks the six batch files of the official tarball into `out_dir`.
fn extract_cifar(tarball: &Path, out_dir: &Path) -> Result<()> {
    let bad = |e: std::io::Error| Error::file(tarball, format!("corrupt archive: {e}"));
    let file =
        File::open(tarball).map_err(|e| Error::file(tarball, format!("cannot read: {e}")))?;
    fs::create_dir_all(out_dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", out_dir.display())))?;
    let wanted: Vec<&str> = [Split::Train, Split::Test]
        .iter()
        .flat_map(|s| cifar::batch_files(*s).iter().copied())
        .collect();
    let mut got: Vec<String> = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = path
            .file_name()
            .and_then(|f| f.to_str())
            .filter(|f| wanted.contains(f))
        else {
            continue;
        };
        // only the bare file name is used, so archive paths cannot escape out_dir
        let dest = out_dir.join(name);
        let tmp = temp_path(&dest);
        let copied = File::create(&tmp)
            .and_then(|mut f| std::io::copy(&mut entry, &mut f).and_then(|_| f.sync_all()))
            .and_then(|_| fs::rename(&tmp, &dest));
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(Error::file(tarball, format!("cannot extract {name}: {e}")));
        }
        got.push(name.to_string());
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|w| !got.iter().any(|g| g == w))
        .collect();
    if !missing.is_empty() {
        return Err(Error::file(
            tarball,
            format!("archive lacks {}", missing.join(", ")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn sha_hex(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    /// Serves one HTTP request on 127.0.0.1 with `status` and `body`; returns the base URL
    /// and a channel that yields the request line received.
    fn serve_once(status: &'static str, body: Vec<u8>) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = tx.send(request_line.trim_end().to_string());
            let mut stream = stream;
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        });
        (format!("http://{addr}"), rx)
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn table_covers_every_split_with_wellformed_sums() {
        for name in DatasetName::ALL {
            for split in [Split::Train, Split::Test] {
                let files = remote_files(name, split);
                let want = match name {
                    DatasetName::Mnist | DatasetName::FashionMnist => 2,
                    _ => 1,
                };
                assert_eq!(files.len(), want, "{name} {split}");
                for f in files {
                    assert_eq!(f.sha256.len(), 64);
                    assert!(f
                        .sha256
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                    assert!(f.url.starts_with("http") && f.url.ends_with(&f.file));
                }
            }
        }
        let m = &remote_files(DatasetName::Mnist, Split::Test)[0];
        assert_eq!(
            m.url,
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"
        );
        assert_eq!(
            url_for(DatasetName::Mnist, m, Some("http://127.0.0.1:9/m/")),
            "http://127.0.0.1:9/m/mnist/t10k-images-idx3-ubyte.gz"
        );
        let c = &remote_files(DatasetName::Cifar10, Split::Train)[0];
        assert_eq!(
            c.url,
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
        );
    }

    #[test]
    fn table_matches_shared_sha256sums() {
        let sums = Path::new("/work/shared/data/mnist/SHA256SUMS");
        let Ok(text) = fs::read_to_string(sums) else {
            eprintln!("skipping: {} not present", sums.display());
            return;
        };
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(sum), Some(file)) = (it.next(), it.next()) else {
                continue;
            };
            let entry = TABLE
                .iter()
                .find(|(n, f, _)| *n == DatasetName::Mnist && *f == file);
            assert_eq!(entry.map(|e| e.2), Some(sum), "{file}");
        }
    }

    #[test]
    fn fetch_file_url() {
        let src = TempDir::new("dl-src");
        let dst = TempDir::new("dl-dst");
        let body = b"hello dataset".to_vec();
        write(&src.path().join("f.bin"), &body);
        let url = format!("file://{}", src.path().join("f.bin").display());
        let dest = dst.path().join("sub/f.bin");
        fetch(&url, &sha_hex(&body).to_uppercase(), &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), body);
        assert_eq!(dir_entries(&dst.path().join("sub")), ["f.bin"]);

        let err = fetch(
            &format!("{url}.missing"),
            &sha_hex(&body),
            &dst.path().join("g"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("f.bin.missing"), "{err}");
        let err = fetch(
            "ftp://example.com/x",
            &sha_hex(&body),
            &dst.path().join("g"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)));
    }

    #[test]
    fn fetch_http_from_local_server() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (base, requests) = serve_once("200 OK", body.clone());
        let dst = TempDir::new("dl-http");
        let dest = dst.path().join("data.bin");
        fetch(&format!("{base}/mnist/data.bin"), &sha_hex(&body), &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), body);
        assert_eq!(requests.recv().unwrap(), "GET /mnist/data.bin HTTP/1.1");
        assert_eq!(dir_entries(dst.path()), ["data.bin"]);
    }

    #[test]
    fn checksum_mismatch_leaves_nothing_and_names_url_and_hashes() {
        let body = b"tampered".to_vec();
        let (base, _requests) = serve_once("200 OK", body.clone());
        let dst = TempDir::new("dl-mismatch");
        let dest = dst.path().join("t10k-images-idx3-ubyte.gz");
        let url = format!("{base}/mnist/t10k-images-idx3-ubyte.gz");
        let expected = "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6";
        let msg = fetch(&url, expected, &dest).unwrap_err().to_string();
        for needle in [url.as_str(), expected, &sha_hex(&body), "checksum mismatch"] {
            assert!(msg.contains(needle), "{msg} lacks {needle}");
        }
        assert!(
            dir_entries(dst.path()).is_empty(),
            "{:?}",
            dir_entries(dst.path())
        );

        // same through a file:// URL
        let src = TempDir::new("dl-mismatch-src");
        write(&src.path().join("x"), &body);
        let url = format!("file://{}", src.path().join("x").display());
        let msg = fetch(&url, expected, &dest).unwrap_err().to_string();
        assert!(
            msg.contains("checksum mismatch") && msg.contains(&url),
            "{msg}"
        );
        assert!(dir_entries(dst.path()).is_empty());
    }

    #[test]
    fn http_error_status_is_reported() {
        let (base, _requests) = serve_once("404 Not Found", b"nope".to_vec());
        let dst = TempDir::new("dl-404");
        let url = format!("{base}/svhn/test_32x32.mat");
        let msg = fetch(&url, &sha_hex(b"nope"), &dst.path().join("test_32x32.mat"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&url) && msg.contains("404"), "{msg}");
        assert!(dir_entries(dst.path()).is_empty());
    }

    fn cifar_tarball(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(enc);
        for (path, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, &data[..]).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn cifar_install_from_mirror_extracts_batches() {
        let mut members: Vec<(String, Vec<u8>)> = (1..=5u8)
            .map(|i| {
                (
                    format!("cifar-10-batches-bin/data_batch_{i}.bin"),
                    cifar_batch(&[i]),
                )
            })
            .collect();
        members.push((
            "cifar-10-batches-bin/test_batch.bin".into(),
            cifar_batch(&[0, 9]),
        ));
        members.push((
            "cifar-10-batches-bin/readme.html".into(),
            b"<html>".to_vec(),
        ));
        let refs: Vec<(&str, Vec<u8>)> = members
            .iter()
            .map(|(p, d)| (p.as_str(), d.clone()))
            .collect();
        let tarball = cifar_tarball(&refs);

        let mirror = TempDir::new("dl-cifar-mirror");
        write(&mirror.path().join("cifar10").join(CIFAR_TARBALL), &tarball);
        let cache = TempDir::new("dl-cifar-cache");
        let dir = cache.path().join("cifar10");
        let remote = RemoteFile {
            file: CIFAR_TARBALL.into(),
            url: "http://unused.invalid/".into(),
            sha256: sha_hex(&tarball),
        };
        let mirror_url = format!("file://{}", mirror.path().display());
        install(
            DatasetName::Cifar10,
            std::slice::from_ref(&remote),
            &dir,
            Some(&mirror_url),
        )
        .unwrap();
        let batches = dir.join(cifar::BATCH_DIR);
        assert_eq!(
            dir_entries(&batches),
            [
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
                "test_batch.bin"
            ]
        );
        assert!(
            !dir.join(CIFAR_TARBALL).exists(),
            "archive removed after extraction"
        );
        assert_eq!(
            fs::read(batches.join("test_batch.bin")).unwrap(),
            cifar_batch(&[0, 9])
        );
        let d =
            crate::data::load_from_dir(DatasetName::Cifar10, Split::Train, cache.path()).unwrap();
        assert_eq!(d.labels, vec![1, 2, 3, 4, 5]);

        // an archive without the test batch is rejected, naming the archive
        let short = cifar_tarball(&refs[..5]);
        write(&mirror.path().join("cifar10").join(CIFAR_TARBALL), &short);
        let remote = RemoteFile {
            sha256: sha_hex(&short),
            ..remote
        };
        let other = TempDir::new("dl-cifar-cache2");
        match install(
            DatasetName::Cifar10,
            &[remote],
            other.path(),
            Some(&mirror_url),
        ) {
            Err(Error::InvalidFile { path, reason }) => {
                assert_eq!(path, other.path().join(CIFAR_TARBALL));
                assert!(reason.contains("lacks test_batch.bin"), "{reason}");
            }
            r => panic!("expected InvalidFile, got {r:?}"),
        }
    }

    #[test]
    fn install_skips_files_already_verified() {
        let dir = TempDir::new("dl-skip");
        let body = b"already here".to_vec();
        write(&dir.path().join("a.bin"), &body);
        let remote = RemoteFile {
            file: "a.bin".into(),
            url: "file:///nonexistent/a.bin".into(),
            sha256: sha_hex(&body),
        };
        // the URL does not exist, so success means no fetch was attempted
        install(
            DatasetName::Mnist,
            std::slice::from_ref(&remote),
            dir.path(),
            None,
        )
        .unwrap();
        // a wrong local copy is replaced (here: fails, since the URL is unreachable)
        write(&dir.path().join("a.bin"), b"wrong");
        assert!(install(DatasetName::Mnist, &[remote], dir.path(), None).is_err());
    }
}
