//! The charts of one SLO target, drawn with `plotters` into SVG strings that the
//! HTML report inlines. All four share one time axis (the report's [`Axis`]), and
//! each carries the deploy markers of the target.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::model::{Axis, SloTarget};
use super::ReportError;

const W: u32 = 960;
const H: u32 = 230;
const FONT: &str = "sans-serif";
const SLI_COLOR: RGBColor = RGBColor(31, 119, 180);
const OBJECTIVE_COLOR: RGBColor = RGBColor(214, 39, 40);
const DEPLOY_COLOR: RGBColor = RGBColor(110, 110, 110);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// One chart: its title and SVG.
pub struct Chart {
    /// Kind: `sli`, `burn`, `budget`, `alerts`.
    pub kind: &'static str,
    /// SVG document.
    pub svg: String,
}

fn err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// The time axis: charts plot `(t - start) / unit`, so that the tick marks
/// plotters picks (round numbers) fall on round minutes, hours or days.
#[derive(Clone, Copy)]
struct Time {
    start: u64,
    unit: f64,
    span: u64,
}

impl Time {
    fn new(axis: &Axis) -> Self {
        let span = axis.end.saturating_sub(axis.start).max(1);
        let unit = if span <= 6 * 3600 {
            60.0
        } else if span <= 7 * 86_400 {
            3600.0
        } else {
            86_400.0
        };
        Time {
            start: axis.start,
            unit,
            span,
        }
    }

    /// Chart x of Unix seconds `t`.
    fn x(&self, t: f64) -> f64 {
        (t - self.start as f64) / self.unit
    }

    /// `HH:MM` when the axis spans at most two days, else `MM-DD HH:MM` (UTC).
    fn label(&self, x: f64) -> String {
        let fmt = if self.span <= 2 * 86_400 {
            "%H:%M"
        } else {
            "%m-%d %H:%M"
        };
        let t = self.start as f64 + x * self.unit;
        chrono::DateTime::from_timestamp(t.round() as i64, 0)
            .map(|d| d.format(fmt).to_string())
            .unwrap_or_default()
    }
}

/// Renders `draw` on a fresh SVG canvas.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// Deploy markers: a dashed-looking thin vertical line per deploy, labelled
/// with version and actor when `labels`.
fn markers<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    t: &SloTarget,
    time: Time,
    (y0, y1): (f64, f64),
    labels: bool,
) -> Result<(), ReportError> {
    for (i, d) in t.deploys.iter().enumerate() {
        let x = time.x(d.deploy.time_unix_nano as f64 / 1e9);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                DEPLOY_COLOR.stroke_width(1),
            )))
            .map_err(err)?;
        if labels {
            let who = if d.deploy.actor.is_empty() {
                "unknown actor"
            } else {
                d.deploy.actor.as_str()
            };
            let text = format!(
                "{} {} {} by {}",
                d.deploy.service, d.deploy.action, d.deploy.version, who
            );
            // Stagger labels so neighbouring deploys stay readable.
            let y = y1 - (y1 - y0) * (0.04 + 0.12 * (i % 3) as f64);
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (x, y),
                    (FONT, 11).into_font().color(&DEPLOY_COLOR),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// The four charts of `t`.
pub fn target_charts(t: &SloTarget, axis: &Axis) -> Result<Vec<Chart>, ReportError> {
    let time = Time::new(axis);
    let x = 0.0..time.x(axis.end as f64);
    let label = |v: &f64| time.label(*v);
    let mut out = Vec::new();

    // 1. The SLI per step against the objective.
    let ratios: Vec<(f64, f64)> = t
        .series
        .iter()
        .filter_map(|p| p.counts.ratio.map(|r| (time.x(p.end as f64), r)))
        .collect();
    let low = ratios
        .iter()
        .map(|p| p.1)
        .fold(t.objective, f64::min)
        .min(t.objective);
    let y0 = (low - (1.0 - low) * 0.1).max(0.0);
    let y1 = 1.0 + (1.0 - y0) * 0.04;
    out.push(Chart {
        kind: "sli",
        svg: svg(|root| {
            let mut c = ChartBuilder::on(root)
                .caption(format!("{} per {} s step", t.sli, step(t)), (FONT, 15))
                .margin(8)
                .margin_right(28)
                .x_label_area_size(26)
                .y_label_area_size(56)
                .build_cartesian_2d(x.clone(), y0..y1)
                .map_err(err)?;
            c.configure_mesh()
                .x_labels(10)
                .x_label_formatter(&label)
                .y_label_formatter(&|v| format!("{:.2}%", v * 100.0))
                .draw()
                .map_err(err)?;
            c.draw_series(LineSeries::new(ratios.clone(), SLI_COLOR.stroke_width(2)))
                .map_err(err)?
                .label(t.sli.as_str())
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], SLI_COLOR));
            c.draw_series(LineSeries::new(
                vec![(x.start, t.objective), (x.end, t.objective)],
                OBJECTIVE_COLOR.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("objective {}", t.objective))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], OBJECTIVE_COLOR));
            markers(&mut c, t, time, (y0, y1), true)?;
            c.configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 11))
                .draw()
                .map_err(err)
        })?,
    });

    // 2. Burn rate per policy window.
    let top = t
        .burn_rates
        .iter()
        .map(|b| b.peak)
        .chain(t.policy.iter().map(|r| r.factor))
        .fold(1.0, f64::max)
        * 1.1;
    out.push(Chart {
        kind: "burn",
        svg: svg(|root| {
            let mut c = ChartBuilder::on(root)
                .caption("burn rate per policy window", (FONT, 15))
                .margin(8)
                .margin_right(28)
                .x_label_area_size(26)
                .y_label_area_size(56)
                .build_cartesian_2d(x.clone(), 0.0..top)
                .map_err(err)?;
            c.configure_mesh()
                .x_labels(10)
                .x_label_formatter(&label)
                .y_label_formatter(&|v| format!("{v:.1}x"))
                .draw()
                .map_err(err)?;
            for (i, b) in t.burn_rates.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts: Vec<(f64, f64)> = b
                    .points
                    .iter()
                    .map(|p| (time.x(p.at as f64), p.burn_rate))
                    .collect();
                c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(err)?
                    .label(b.window.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            }
            let mut factors: Vec<f64> = t.policy.iter().map(|r| r.factor).collect();
            factors.sort_by(f64::total_cmp);
            factors.dedup();
            let mut labelled = f64::NEG_INFINITY;
            for f in factors {
                c.draw_series(std::iter::once(PathElement::new(
                    vec![(x.start, f), (x.end, f)],
                    OBJECTIVE_COLOR.mix(0.5).stroke_width(1),
                )))
                .map_err(err)?;
                // Label a factor line only where it does not overlap the last label.
                if f - labelled >= top * 0.07 {
                    labelled = f;
                    c.draw_series(std::iter::once(Text::new(
                        format!("{f}x"),
                        (x.end * 0.005, f + top * 0.06),
                        (FONT, 10).into_font().color(&OBJECTIVE_COLOR),
                    )))
                    .map_err(err)?;
                }
            }
            markers(&mut c, t, time, (0.0, top), false)?;
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 11))
                .draw()
                .map_err(err)
        })?,
    });

    // 3. Budget burn-down.
    let pts: Vec<(f64, f64)> = t
        .burndown
        .iter()
        .map(|p| (time.x(p.at as f64), p.remaining))
        .collect();
    let low = pts.iter().map(|p| p.1).fold(0.0, f64::min);
    let y0 = if low < 0.0 { low * 1.1 } else { 0.0 };
    out.push(Chart {
        kind: "budget",
        svg: svg(|root| {
            let mut c = ChartBuilder::on(root)
                .caption("error budget remaining (period budget)", (FONT, 15))
                .margin(8)
                .margin_right(28)
                .x_label_area_size(26)
                .y_label_area_size(56)
                .build_cartesian_2d(x.clone(), y0..1.05)
                .map_err(err)?;
            c.configure_mesh()
                .x_labels(10)
                .x_label_formatter(&label)
                .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
                .draw()
                .map_err(err)?;
            c.draw_series(std::iter::once(PathElement::new(
                vec![(x.start, 0.0), (x.end, 0.0)],
                BLACK.mix(0.6).stroke_width(1),
            )))
            .map_err(err)?;
            c.draw_series(LineSeries::new(pts.clone(), PALETTE[2].stroke_width(2)))
                .map_err(err)?;
            markers(&mut c, t, time, (y0, 1.05), false)
        })?,
    });

    // 4. Alert timeline: one row per severity.
    let rows = ["ticket", "page"];
    out.push(Chart {
        kind: "alerts",
        svg: svg(|root| {
            let mut c = ChartBuilder::on(root)
                .caption(
                    "alerts (red: page, orange: ticket, grey: suppressed)",
                    (FONT, 15),
                )
                .margin(8)
                .margin_right(28)
                .x_label_area_size(26)
                .y_label_area_size(56)
                .build_cartesian_2d(x.clone(), 0.0..2.0)
                .map_err(err)?;
            c.configure_mesh()
                .x_labels(10)
                .x_label_formatter(&label)
                .y_labels(5)
                .y_label_formatter(&|v: &f64| {
                    let i = (*v - 0.5).round();
                    if (v - 0.5 - i).abs() < 1e-9 && (0.0..2.0).contains(&i) {
                        rows[i as usize].to_string()
                    } else {
                        String::new()
                    }
                })
                .disable_y_mesh()
                .draw()
                .map_err(err)?;
            let secs = |s: &str| {
                time.x(causeway_schemas::time::parse_rfc3339(s).map_or(0.0, |ns| ns as f64 / 1e9))
            };
            for a in &t.alerts {
                let row = if a.severity == "page" { 1.0 } else { 0.0 };
                let start = secs(&a.starts_at).max(x.start);
                let end = a.ends_at.as_deref().map_or(x.end, secs).min(x.end);
                let color = if a.suppressed {
                    RGBColor(150, 150, 150)
                } else if a.severity == "page" {
                    OBJECTIVE_COLOR
                } else {
                    PALETTE[1]
                };
                c.draw_series(std::iter::once(Rectangle::new(
                    [(start, row + 0.2), (end, row + 0.8)],
                    color.filled(),
                )))
                .map_err(err)?;
            }
            if t.alerts.is_empty() {
                c.draw_series(std::iter::once(Text::new(
                    "no alert in the period",
                    ((x.start + x.end) / 2.0, 1.1),
                    (FONT, 13).into_font().color(&DEPLOY_COLOR),
                )))
                .map_err(err)?;
            }
            markers(&mut c, t, time, (0.0, 2.0), false)
        })?,
    });
    Ok(out)
}

fn step(t: &SloTarget) -> u64 {
    t.series.first().map_or(0, |p| p.end - p.start)
}
