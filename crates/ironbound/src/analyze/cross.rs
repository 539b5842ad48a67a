//! Cross-certification (paradox Appendix H, Table 7): every model certified with every
//! method on the same samples, as a matrix of certified accuracies (rows: models, i.e. the
//! method each was trained with; columns: the certification method).

use super::plot::Heatmap;
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One model's row: its clean accuracy and certified accuracy per method.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub model: String,
    pub clean_accuracy: f64,
    pub certified_accuracy: BTreeMap<String, f64>,
}

/// The matrix, with the methods in the order asked for.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CrossMatrix {
    pub n: usize,
    pub eps: f64,
    pub methods: Vec<String>,
    pub rows: Vec<Row>,
}

impl CrossMatrix {
    /// `cross.csv`: `model,clean_accuracy,M1,M2,...` (fractions).
    pub fn csv(&self) -> String {
        let mut out = format!("model,clean_accuracy,{}\n", self.methods.join(","));
        for r in &self.rows {
            let cells: Vec<String> = self.methods.iter().map(|m| r.certified_accuracy.get(m).map(|v| v.to_string()).unwrap_or_default()).collect();
            out.push_str(&format!("{},{},{}\n", r.model, r.clean_accuracy, cells.join(",")));
        }
        out
    }

    /// The heatmap of certified accuracy in percent.
    pub fn heatmap(&self, title: &str) -> Heatmap {
        Heatmap {
            title: title.into(),
            rows: self.rows.iter().map(|r| r.model.clone()).collect(),
            cols: self.methods.clone(),
            values: self.rows.iter().map(|r| self.methods.iter().map(|m| 100.0 * r.certified_accuracy.get(m).copied().unwrap_or(f64::NAN)).collect()).collect(),
            x_label: "certified with".into(),
            y_label: "model (trained with)".into(),
        }
    }

    /// cross.csv, cross.json and cross.png/.svg into `dir`.
    pub fn write(&self, dir: &Path, title: &str) -> Result<()> {
        write_bytes(&dir.join("cross.csv"), self.csv().as_bytes())?;
        let json = serde_json::to_string_pretty(self).map_err(Error::internal)? + "\n";
        write_bytes(&dir.join("cross.json"), json.as_bytes())?;
        self.heatmap(title).write(&dir.join("cross"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_column_per_method_in_order() {
        let m = CrossMatrix {
            n: 10,
            eps: 0.3,
            methods: vec!["ibp".into(), "crown".into()],
            rows: vec![Row { model: "box".into(), clean_accuracy: 0.9, certified_accuracy: [("crown".to_string(), 0.5), ("ibp".to_string(), 0.7)].into() }],
        };
        assert_eq!(m.csv(), "model,clean_accuracy,ibp,crown\nbox,0.9,0.7,0.5\n");
        let h = m.heatmap("t");
        assert_eq!(h.values, vec![vec![70.0, 50.0]]);
    }
}
