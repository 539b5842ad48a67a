//! Sharding: one long evaluation split into N processes (or machines) that each take one
//! contiguous slice of the items, and the merge of their result files into the one file an
//! unsharded run writes.
//!
//! [`Shard`] is the `--shard I/N` of `certify` and `verify --instances` (and of any later
//! command that walks a list): [`Shard::range`] says which items it takes, and [`arrange`]
//! checks that a set of shard files is exactly one complete split (no shard missing, none
//! twice, all of the same N and total) and puts them in order. The merges of the two file
//! kinds are [`merge_reports`] (certify's report.json) and [`merge_results_csv`] (verify's
//! results.csv); [`merge`] tells the kinds apart.

use super::certify::{accuracy, Counts, Report, StageCount};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// The `index`-th (1-based) of `count` contiguous, nearly equal slices of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Checks 1 <= index <= count.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index == 0 || index > count {
            return Err(Error::input(format!("--shard {index}/{count}: expected I/N with 1 <= I <= N")));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || Error::input(format!("--shard '{text}': expected I/N with 1 <= I <= N, e.g. 2/8"));
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        Shard::new(i, n).map_err(|_| bad())
    }

    /// The items of this shard among `total`: the first `total % count` shards get one item
    /// more than the others (as numpy's `array_split`), so sizes differ by at most one and
    /// the shards tile `0..total` in order. A shard may be empty when count > total.
    pub fn range(&self, total: usize) -> Range<usize> {
        let (q, r) = (total / self.count, total % self.count);
        let start = |i: usize| i * q + i.min(r);
        start(self.index - 1)..start(self.index)
    }

    /// [`Shard::range`], refusing a split with empty shards (their files could not say which
    /// items they cover, so a merge could not check them). `what` names the items.
    pub fn checked_range(&self, total: usize, what: &str) -> Result<Range<usize>> {
        if self.count > total {
            return Err(Error::input(format!("--shard {self}: {total} {what} cannot be split into {} non-empty shards", self.count)));
        }
        Ok(self.range(total))
    }
}

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        Shard::parse(s)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What one shard file says about itself, for [`arrange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The file, for error messages.
    pub name: String,
    pub shard: Shard,
    /// How many items the whole split has.
    pub total: usize,
    /// The items the file holds.
    pub range: Range<usize>,
}

/// Checks that `parts` are the N shards of one split of `total` items, each exactly once and
/// holding exactly its [`Shard::range`], and returns their positions in shard order. `what`
/// names the items in errors ("samples", "instances").
pub fn arrange(parts: &[Part], what: &str) -> Result<Vec<usize>> {
    let first = parts.first().ok_or_else(|| Error::input("merge needs at least one shard file"))?;
    for p in parts {
        if p.shard.count != first.shard.count {
            return Err(Error::input(format!(
                "{} is shard {} but {} is shard {}: shards of different splits cannot be merged",
                first.name, first.shard, p.name, p.shard
            )));
        }
        if p.total != first.total {
            return Err(Error::input(format!(
                "{} is a shard of {} {what} but {} of {}: shards of different runs cannot be merged",
                first.name, first.total, p.name, p.total
            )));
        }
        let want = p.shard.range(p.total);
        if p.range != want {
            return Err(Error::input(format!(
                "{}: holds {what} {}..{}, but shard {} of {} {what} is {}..{}",
                p.name, p.range.start, p.range.end, p.shard, p.total, want.start, want.end
            )));
        }
    }
    let mut by_index: BTreeMap<usize, usize> = BTreeMap::new();
    for (at, p) in parts.iter().enumerate() {
        if let Some(&other) = by_index.get(&p.shard.index) {
            return Err(Error::input(format!("{} and {} are both shard {} (overlapping shards)", parts[other].name, p.name, p.shard)));
        }
        by_index.insert(p.shard.index, at);
    }
    let count = first.shard.count;
    let missing: Vec<String> = (1..=count).filter(|i| !by_index.contains_key(i)).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        return Err(Error::input(format!("missing shard{} {} of {} {what}", if missing.len() > 1 { "s" } else { "" }, missing.join(", "), first.total)));
    }
    Ok(by_index.into_values().collect())
}

/// The `shard` object of a `certify --shard` report: where its samples lie among the whole
/// selection, and the counts behind its fractions, so that [`merge_reports`] can recompute
/// every accuracy exactly as one unsharded run does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportShard {
    pub index: usize,
    pub count: usize,
    /// The shard's samples are `start..end` of the `total` selected ones (0-based).
    pub start: usize,
    pub end: usize,
    pub total: usize,
    /// Correctly classified samples.
    pub clean: usize,
    /// Samples PGD did not break (only with `--pgd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgd_robust: Option<usize>,
}

impl ReportShard {
    fn part(&self, name: &str) -> Result<Part> {
        let shard = Shard::new(self.index, self.count).map_err(|e| Error::file(name, e))?;
        Ok(Part { name: name.to_string(), shard, total: self.total, range: self.start..self.end })
    }
}

/// Checks one certify shard report against itself: its counts must add up to its `n`.
fn check_report(name: &str, r: &Report, s: &ReportShard) -> Result<()> {
    let bad = |what: String| Err(Error::file(name, format!("inconsistent shard report: {what}")));
    if s.end < s.start || r.n != s.end - s.start {
        return bad(format!("n = {} but the shard holds samples {}..{}", r.n, s.start, s.end));
    }
    if s.clean > r.n || s.pgd_robust.is_some_and(|p| p > r.n) {
        return bad("more correct or PGD-robust samples than samples".into());
    }
    if s.pgd_robust.is_some() != r.pgd_accuracy.is_some() {
        return bad("`pgd_accuracy` and `shard.pgd_robust` must come together".into());
    }
    for (method, c) in &r.outcomes {
        if c.certified + c.falsified + c.timed_out + c.unknown != r.n {
            return bad(format!("the outcomes of {method} do not add up to n = {}", r.n));
        }
    }
    if r.certified_accuracy.keys().ne(r.outcomes.keys()) {
        return bad("`certified_accuracy` and `outcomes` name different methods".into());
    }
    Ok(())
}

/// Refuses shards of differently configured runs: what must be equal between them.
fn check_same_run(first: (&str, &Report), other: (&str, &Report)) -> Result<()> {
    let ((a, x), (b, y)) = (first, other);
    let differ = |what: &str, u: String, v: String| Err(Error::input(format!("{a} has {what} {u} but {b} has {v}: shards of different runs cannot be merged")));
    if x.eps.to_bits() != y.eps.to_bits() {
        return differ("eps", x.eps.to_string(), y.eps.to_string());
    }
    let methods = |r: &Report| r.outcomes.keys().cloned().collect::<Vec<_>>().join(",");
    if methods(x) != methods(y) {
        return differ("methods", methods(x), methods(y));
    }
    if x.pgd_accuracy.is_some() != y.pgd_accuracy.is_some() {
        let pgd = |r: &Report| if r.pgd_accuracy.is_some() { "a PGD accuracy" } else { "none" };
        return Err(Error::input(format!("{a} has {} but {b} has {}: shards of different runs cannot be merged", pgd(x), pgd(y))));
    }
    if x.clip != y.clip {
        return differ("clip", format!("{:?}", x.clip), format!("{:?}", y.clip));
    }
    if x.timeout_seconds != y.timeout_seconds {
        return differ("timeout", format!("{:?}", x.timeout_seconds), format!("{:?}", y.timeout_seconds));
    }
    if x.sound != y.sound {
        return differ("sound", x.sound.to_string(), y.sound.to_string());
    }
    Ok(())
}

/// Adds a shard's per-stage cascade counts to the merged ones (a cascade's later stages are
/// listed only once some sample reached them, so lengths may differ).
fn add_stages(name: &str, into: &mut Vec<StageCount>, stages: &[StageCount]) -> Result<()> {
    for (depth, s) in stages.iter().enumerate() {
        match into.get_mut(depth) {
            Some(t) if t.method == s.method => {
                t.certified += s.certified;
                t.falsified += s.falsified;
            }
            Some(t) => return Err(Error::input(format!("{name}: cascade stage {} is {} where other shards have {}", depth + 1, s.method, t.method))),
            None => into.push(s.clone()),
        }
    }
    Ok(())
}

/// Merges the reports of `certify --shard 1/N ... N/N` (each named by its file) into the
/// report one unsharded run writes: counts are added and every accuracy is recomputed from
/// them with the unsharded run's expression; `seconds` are the shards' sums (so CPU time, not
/// wall time, when the shards ran in parallel).
pub fn merge_reports(reports: &[(String, Report)]) -> Result<Report> {
    let mut parts = Vec::with_capacity(reports.len());
    for (name, r) in reports {
        let s = r.shard.as_ref().ok_or_else(|| Error::file(name, "not a shard report (no `shard` object): write one with `certify --shard I/N`"))?;
        check_report(name, r, s)?;
        parts.push(s.part(name)?);
    }
    let order = arrange(&parts, "samples")?;
    let (first_name, first) = &reports[order[0]];
    let n = parts[order[0]].total;
    let (mut clean, mut pgd, mut conflicts) = (0usize, 0usize, 0usize);
    let mut outcomes: BTreeMap<String, Counts> = BTreeMap::new();
    let mut cascade_stages: BTreeMap<String, Vec<StageCount>> = BTreeMap::new();
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    for &at in &order {
        let (name, r) = &reports[at];
        check_same_run((first_name, first), (name, r))?;
        let s = r.shard.as_ref().ok_or_else(|| Error::internal("shard object vanished"))?;
        clean += s.clean;
        pgd += s.pgd_robust.unwrap_or(0);
        conflicts += r.soundness_conflicts;
        for (method, c) in &r.outcomes {
            let t = outcomes.entry(method.clone()).or_default();
            t.certified += c.certified;
            t.falsified += c.falsified;
            t.timed_out += c.timed_out;
            t.unknown += c.unknown;
        }
        for (method, stages) in &r.cascade_stages {
            add_stages(name, cascade_stages.entry(method.clone()).or_default(), stages)?;
        }
        for (key, t) in &r.seconds {
            *seconds.entry(key.clone()).or_default() += t;
        }
    }
    Ok(Report {
        n,
        eps: first.eps,
        clean_accuracy: accuracy(clean, n),
        certified_accuracy: outcomes.iter().map(|(k, c)| (k.clone(), accuracy(c.certified, n))).collect(),
        pgd_accuracy: first.pgd_accuracy.map(|_| accuracy(pgd, n)),
        sound: first.sound,
        outcomes,
        cascade_stages,
        soundness_conflicts: conflicts,
        seconds,
        clip: first.clip,
        timeout_seconds: first.timeout_seconds,
        shard: None,
    })
}

/// The columns of verify's results.csv.
pub const RESULTS_HEADER: &str = "onnx,vnnlib,result,seconds,stage";
/// The columns a `verify --instances --shard` results.csv appends to each row: the
/// instance's 0-based line among the instances, the shard (`I/N`) and the number of
/// instances.
pub const SHARD_COLUMNS: &str = "instance,shard,total";

/// The values of [`SHARD_COLUMNS`] for one row.
pub fn shard_columns(instance: usize, shard: Shard, total: usize) -> String {
    format!("{instance},{shard},{total}")
}

/// One row of a sharded results.csv: the unsharded row and its shard columns.
struct ShardRow {
    row: String,
    instance: usize,
    shard: Shard,
    total: usize,
}

fn parse_row(name: &str, line_no: usize, line: &str) -> Result<ShardRow> {
    let bad = |why: &str| Error::file(name, format!("line {line_no}: {why} (expected {RESULTS_HEADER},{SHARD_COLUMNS})"));
    // From the right: the shard columns are ours; the row before them is kept as it is.
    let mut fields = line.rsplitn(4, ',');
    let (Some(total), Some(shard), Some(instance), Some(row)) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(bad("too few columns"));
    };
    Ok(ShardRow {
        row: row.to_string(),
        instance: instance.trim().parse().map_err(|_| bad("`instance` is not a number"))?,
        shard: Shard::parse(shard).map_err(|_| bad("`shard` is not I/N"))?,
        total: total.trim().parse().map_err(|_| bad("`total` is not a number"))?,
    })
}

/// Merges the results.csv files of `verify --instances --shard 1/N ... N/N` (name, text)
/// into the unsharded results.csv: its header and every row, in instance order.
pub fn merge_results_csv(files: &[(String, String)]) -> Result<String> {
    let sharded_header = format!("{RESULTS_HEADER},{SHARD_COLUMNS}");
    let mut parts = Vec::with_capacity(files.len());
    let mut rows: Vec<Vec<ShardRow>> = Vec::with_capacity(files.len());
    for (name, text) in files {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, h)) if h.trim() == sharded_header => {}
            Some((_, h)) if h.trim() == RESULTS_HEADER => {
                return Err(Error::file(name, format!("not a shard's results (no {SHARD_COLUMNS} columns): write one with `verify --instances ... --shard I/N`")))
            }
            _ => return Err(Error::file(name, format!("not a verify results.csv (header {sharded_header})"))),
        }
        let file_rows = lines.map(|(i, l)| parse_row(name, i + 1, l)).collect::<Result<Vec<_>>>()?;
        let Some(head) = file_rows.first() else {
            return Err(Error::file(name, "no rows: cannot tell which shard it is"));
        };
        let (shard, total, start) = (head.shard, head.total, head.instance);
        for (k, r) in file_rows.iter().enumerate() {
            if r.shard != shard || r.total != total || r.instance != start + k {
                return Err(Error::file(name, format!("row {}: instance {} of shard {} of {}, expected instance {} of shard {shard} of {total}", k + 1, r.instance, r.shard, r.total, start + k)));
            }
        }
        parts.push(Part { name: name.clone(), shard, total, range: start..start + file_rows.len() });
        rows.push(file_rows);
    }
    let order = arrange(&parts, "instances")?;
    let mut text = format!("{RESULTS_HEADER}\n");
    for at in order {
        for r in &rows[at] {
            text.push_str(&r.row);
            text.push('\n');
        }
    }
    Ok(text)
}

/// What [`merge`] produced.
#[derive(Debug)]
pub enum Merged {
    /// A certify report.json (the CLI writes it as `certify` does).
    Report(Box<Report>),
    /// A verify results.csv, complete text.
    ResultsCsv(String),
}

/// Merges shard files (name, text), telling their kind from the content: a JSON object is a
/// certify report, anything else a verify results.csv. Mixed kinds are an error.
pub fn merge(files: &[(String, String)]) -> Result<Merged> {
    let is_json = |t: &str| t.trim_start().starts_with('{');
    let Some((first, text)) = files.first() else {
        return Err(Error::input("merge needs at least one shard file"));
    };
    if let Some((other, other_text)) = files.iter().find(|(_, t)| is_json(t) != is_json(text)) {
        let kind = |t: &str| if is_json(t) { "a certify report" } else { "a verify results.csv" };
        return Err(Error::input(format!("{first} is {} but {other} is {}: merge files of one kind", kind(text), kind(other_text))));
    }
    if !is_json(text) {
        return merge_results_csv(files).map(Merged::ResultsCsv);
    }
    let reports = files
        .iter()
        .map(|(name, t)| serde_json::from_str::<Report>(t).map(|r| (name.clone(), r)).map_err(|e| Error::file(name, format!("not a certify report: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    merge_reports(&reports).map(|r| Merged::Report(Box::new(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert_eq!(Shard::parse(" 1 / 1 ").unwrap().to_string(), "1/1");
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/2/3", "-1/2", ""] {
            let e = Shard::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("I/N"), "{e}");
        }
    }

    #[test]
    fn ranges_tile_the_list_in_nearly_equal_slices() {
        for total in 0..40 {
            for count in 1..12 {
                let mut next = 0;
                for index in 1..=count {
                    let r = Shard::new(index, count).unwrap().range(total);
                    assert_eq!(r.start, next);
                    assert!(r.len() == total / count || r.len() == total / count + 1, "{index}/{count} of {total}: {r:?}");
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
        assert_eq!(Shard::new(1, 3).unwrap().range(31), 0..11);
        assert_eq!(Shard::new(3, 3).unwrap().range(31), 21..31);
        assert!(Shard::new(2, 5).unwrap().checked_range(4, "samples").is_err());
        assert_eq!(Shard::new(4, 4).unwrap().checked_range(4, "samples").unwrap(), 3..4);
    }

    fn part(name: &str, index: usize, count: usize, total: usize) -> Part {
        let shard = Shard::new(index, count).unwrap();
        Part { name: name.into(), shard, total, range: shard.range(total) }
    }

    #[test]
    fn arrange_orders_and_refuses_incomplete_sets() {
        let ok = [part("c", 3, 3, 10), part("a", 1, 3, 10), part("b", 2, 3, 10)];
        assert_eq!(arrange(&ok, "samples").unwrap(), [1, 2, 0]);
        let err = |parts: &[Part]| arrange(parts, "samples").unwrap_err().to_string();
        assert!(err(&[part("a", 1, 3, 10), part("c", 3, 3, 10)]).contains("missing shard 2/3"));
        assert!(err(&[part("a", 1, 3, 10), part("b", 1, 3, 10), part("c", 3, 3, 10)]).contains("overlapping"));
        assert!(err(&[part("a", 1, 3, 10), part("b", 2, 4, 10)]).contains("different splits"));
        assert!(err(&[part("a", 1, 2, 10), part("b", 2, 2, 11)]).contains("different runs"));
        let mut shifted = part("b", 2, 2, 10);
        shifted.range = 4..10;
        assert!(err(&[part("a", 1, 2, 10), shifted]).contains("holds samples 4..10"));
        assert!(err(&[]).contains("at least one"));
    }

    #[test]
    fn results_csv_merge_in_instance_order() {
        let shard = |i: usize, rows: &[(usize, &str)]| {
            let mut t = format!("{RESULTS_HEADER},{SHARD_COLUMNS}\n");
            for (k, r) in rows {
                t.push_str(&format!("{r},{}\n", shard_columns(*k, Shard::new(i, 2).unwrap(), 3)));
            }
            t
        };
        let a = shard(1, &[(0, "a.onnx,p0.vnnlib,unsat,0.100,milp"), (1, "a.onnx,p1.vnnlib,sat,0.200,falsify")]);
        let b = shard(2, &[(2, "a.onnx,p2.vnnlib,error,0.000,")]);
        let merged = merge(&[("b".into(), b.clone()), ("a".into(), a.clone())]).unwrap();
        let Merged::ResultsCsv(text) = merged else { panic!("not a CSV") };
        assert_eq!(text, format!("{RESULTS_HEADER}\na.onnx,p0.vnnlib,unsat,0.100,milp\na.onnx,p1.vnnlib,sat,0.200,falsify\na.onnx,p2.vnnlib,error,0.000,\n"));
        let err = |files: &[(&str, &str)]| {
            let files: Vec<(String, String)> = files.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
            merge(&files).unwrap_err().to_string()
        };
        assert!(err(&[("a", &a)]).contains("missing shard 2/2"));
        assert!(err(&[("a", &a), ("a2", &a), ("b", &b)]).contains("overlapping"));
        assert!(err(&[("a", &a), ("r", "{}")]).contains("one kind"));
        assert!(err(&[("u", &format!("{RESULTS_HEADER}\nx,y,unsat,1.0,milp\n"))]).contains("not a shard"));
        let gap = shard(2, &[(2, "x,y,unsat,1.0,milp"), (4, "x,y,unsat,1.0,milp")]);
        assert!(err(&[("a", &a), ("g", &gap)]).contains("expected instance 3"));
    }
}
