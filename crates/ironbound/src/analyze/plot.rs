//! Figures for the analyses: line charts drawn with plotters, written as PNG and SVG.
//!
//! Text in a PNG needs a TrueType font; plotters' `ab_glyph` backend takes one we load, so no
//! font-discovery library is linked. The font comes from `$IRONBOUND_FONT` or the usual
//! Debian places (package fonts-dejavu-core); SVGs name it and let the viewer render it.

use crate::error::{Error, Result};
use crate::io::atomic;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a sans-serif TrueType font is looked for, after `$IRONBOUND_FONT`.
const FONT_PLACES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;

/// One named curve.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart of several curves over a shared x axis.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. 0..100 for percentages); the data's range when absent.
    pub y_range: Option<(f64, f64)>,
}

/// A labelled matrix of values (e.g. certified accuracy in %), one coloured cell each with
/// its value written in it.
#[derive(Clone, Debug)]
pub struct Heatmap {
    pub title: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `values[row][col]`; NaN cells are left grey.
    pub values: Vec<Vec<f64>>,
    pub x_label: String,
    pub y_label: String,
}

/// Distributions side by side: one violin (a mirrored kernel density estimate) per group,
/// with its median and quartiles marked.
#[derive(Clone, Debug)]
pub struct Violins {
    pub title: String,
    pub y_label: String,
    /// (group name, samples).
    pub groups: Vec<(String, Vec<f64>)>,
}

/// Registers the font once per process; fails with an actionable message when none exists.
pub fn ensure_font() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(load_font).clone().map_err(Error::internal)
}

fn load_font() -> std::result::Result<(), String> {
    let from_env = std::env::var_os("IRONBOUND_FONT").map(PathBuf::from);
    let candidates: Vec<PathBuf> = from_env.iter().cloned().chain(FONT_PLACES.iter().map(PathBuf::from)).collect();
    for path in &candidates {
        let Ok(bytes) = std::fs::read(path) else { continue };
        // plotters keeps fonts for the whole process, so it takes a 'static slice.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            return Ok(());
        }
        if from_env.as_ref() == Some(path) {
            return Err(format!("{}: $IRONBOUND_FONT is not a TrueType/OpenType font", path.display()));
        }
    }
    Err("no TrueType font for figures: install fonts-dejavu-core or set IRONBOUND_FONT to a .ttf file".into())
}

/// A distinct colour per curve index.
fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

fn draw_error(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("drawing a figure: {e}"))
}

impl LineChart {
    /// The x and y ranges the axes show, padded so no curve sits on the frame.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let points = || self.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let span = |lo: f64, hi: f64| if lo.is_finite() && hi > lo { (lo, hi) } else if lo.is_finite() { (lo - 0.5, lo + 0.5) } else { (0.0, 1.0) };
        let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(x, _)| (a.min(x), b.max(x)));
        let y = self.y_range.unwrap_or_else(|| {
            let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, y)| (a.min(y), b.max(y)));
            let (y0, y1) = span(y0, y1);
            let pad = 0.05 * (y1 - y0);
            (y0 - pad, y1 + pad)
        });
        (span(x0, x1), y)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        let ((x0, x1), (y0, y1)) = self.ranges();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_error)?;
        for (i, s) in self.series.iter().enumerate() {
            let c = colour(i);
            let points = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(draw_error)?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2)));
        }
        if !self.series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 16))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)
    }

    /// Writes `STEM.png` and `STEM.svg`, each atomically.
    pub fn write(&self, stem: &Path) -> Result<()> {
        write_figure(stem, |area| self.draw(area), |area| self.draw(area))
    }

    /// The chart as an SVG document (for pages that inline their figures).
    pub fn svg(&self) -> Result<String> {
        // Even SVG text is measured (legend boxes), so the font must be loaded.
        ensure_font()?;
        let mut svg = String::new();
        self.draw(SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area())?;
        Ok(svg)
    }
}

impl Heatmap {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        let (nr, nc) = (self.rows.len().max(1), self.cols.len().max(1));
        root.fill(&WHITE).map_err(draw_error)?;
        let finite = self.values.iter().flatten().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let scale = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        let rows = self.rows.clone();
        let cols = self.cols.clone();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(180)
            .build_cartesian_2d(0.0..nc as f64, 0.0..nr as f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_labels(nc * 2 + 1)
            .y_labels(nr * 2 + 1)
            // Labels sit at cell centres (x.5); the grid lines at integers get none.
            .x_label_formatter(&|x| label_at(&cols, *x))
            .y_label_formatter(&|y| label_at(&rows, nr as f64 - *y))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(draw_error)?;
        for (r, line) in self.values.iter().enumerate() {
            for (c, &v) in line.iter().enumerate() {
                // Rows top to bottom in the order given.
                let (x0, y0) = (c as f64, (nr - 1 - r) as f64);
                let fill = if v.is_finite() {
                    let t = scale(v);
                    RGBColor((255.0 - 200.0 * t) as u8, (255.0 - 120.0 * t) as u8, 255)
                } else {
                    RGBColor(200, 200, 200)
                };
                chart.draw_series(std::iter::once(Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], fill.filled()))).map_err(draw_error)?;
                let text = if v.is_finite() { format!("{v:.1}") } else { "-".into() };
                let style = ("sans-serif", 18).into_font().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
                chart.draw_series(std::iter::once(Text::new(text, (x0 + 0.5, y0 + 0.5), style))).map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)
    }

    /// Writes `STEM.png` and `STEM.svg`, each atomically.
    pub fn write(&self, stem: &Path) -> Result<()> {
        write_figure(stem, |area| self.draw(area), |area| self.draw(area))
    }
}

/// Gaussian kernel density of `xs` at `at`, Silverman's bandwidth.
fn density(xs: &[f64], at: &[f64]) -> Vec<f64> {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    let h = (1.06 * sd * n.powf(-0.2)).max(1e-9 * (1.0 + mean.abs()));
    at.iter().map(|&y| xs.iter().map(|&x| (-0.5 * ((y - x) / h).powi(2)).exp()).sum::<f64>() / (n * h * (2.0 * std::f64::consts::PI).sqrt())).collect()
}

/// The `q`-quantile of sorted values (linear interpolation).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    sorted[i] + frac * (sorted[(i + 1).min(sorted.len() - 1)] - sorted[i])
}

impl Violins {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(draw_error)?;
        let finite: Vec<Vec<f64>> = self.groups.iter().map(|(_, v)| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            v
        }).collect();
        let (lo, hi) = finite.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else if lo.is_finite() { (lo - 0.5, lo + 0.5) } else { (0.0, 1.0) };
        let pad = 0.05 * (hi - lo);
        let names: Vec<String> = self.groups.iter().map(|(n, _)| n.clone()).collect();
        let k = names.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..k as f64, (lo - pad)..(hi + pad))
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * k + 1)
            .x_label_formatter(&|x| label_at(&names, *x))
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(draw_error)?;
        for (i, v) in finite.iter().enumerate() {
            if v.len() < 2 {
                continue;
            }
            let c = colour(i);
            let grid: Vec<f64> = (0..=100).map(|j| v[0] + (v[v.len() - 1] - v[0]) * j as f64 / 100.0).collect();
            let d = density(v, &grid);
            let peak = d.iter().copied().fold(0.0, f64::max).max(1e-300);
            let centre = i as f64 + 0.5;
            let half: Vec<(f64, f64)> = grid.iter().zip(&d).map(|(&y, &dy)| (centre + 0.4 * dy / peak, y)).collect();
            let mut outline = half.clone();
            outline.extend(half.iter().rev().map(|&(x, y)| (2.0 * centre - x, y)));
            chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.5).filled()))).map_err(draw_error)?;
            for (q, width) in [(0.25, 0.08), (0.5, 0.2), (0.75, 0.08)] {
                let y = quantile(v, q);
                chart.draw_series(std::iter::once(PathElement::new(vec![(centre - width, y), (centre + width, y)], BLACK.stroke_width(2)))).map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)
    }

    /// Writes `STEM.png` and `STEM.svg`, each atomically.
    pub fn write(&self, stem: &Path) -> Result<()> {
        write_figure(stem, |area| self.draw(area), |area| self.draw(area))
    }
}

/// The name of the cell whose centre is at `x` (cells span [i, i + 1]).
fn label_at(names: &[String], x: f64) -> String {
    let i = x - 0.5;
    if (i - i.round()).abs() < 1e-6 && i >= -1e-6 {
        names.get(i.round() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Draws a figure twice (SVG text, RGB bitmap) and writes `STEM.svg` and `STEM.png`.
fn write_figure(
    stem: &Path,
    svg_draw: impl FnOnce(DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
    png_draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    let mut svg = String::new();
    svg_draw(SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area())?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    png_draw(BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area())?;
    let png_path = stem.with_extension("png");
    atomic::write_with(&png_path, |file| {
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let fail = |e: png::EncodingError| Error::internal(format!("{}: {e}", png_path.display()));
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&rgb).map_err(fail)?;
        writer.finish().map_err(fail)
    })?;
    atomic::write_bytes(&stem.with_extension("svg"), svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_and_svg_with_every_series() {
        let dir = std::env::temp_dir().join(format!("ironbound-plot-{}", std::process::id()));
        let chart = LineChart {
            title: "test".into(),
            x_label: "eps".into(),
            y_label: "certified (%)".into(),
            series: vec![
                Series { name: "ibp".into(), points: vec![(0.0, 90.0), (0.1, 40.0)] },
                Series { name: "crown".into(), points: vec![(0.0, 90.0), (0.1, 60.0)] },
            ],
            y_range: Some((0.0, 100.0)),
        };
        chart.write(&dir.join("curve")).unwrap();
        let png = std::fs::read(dir.join("curve.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let info = decoder.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (WIDTH, HEIGHT));
        let svg = std::fs::read_to_string(dir.join("curve.svg")).unwrap();
        assert!(svg.contains("ibp") && svg.contains("crown") && svg.contains("certified (%)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
