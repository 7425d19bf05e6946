//! `report.html`: one self-contained page (inline CSS and SVG charts, no script,
//! no external resource) that works offline and prints on A4 landscape.

use super::charts::target_charts;
use super::model::Report;
use super::tables::{self, Table};
use super::ReportError;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cell(s: &str) -> String {
    match s.strip_prefix("**").and_then(|s| s.strip_suffix("**")) {
        Some(bold) => format!("<strong class=\"bad\">{}</strong>", esc(bold)),
        None => esc(s),
    }
}

fn table(out: &mut String, t: &Table) {
    if t.rows.is_empty() {
        out.push_str("<p class=\"none\">None.</p>\n");
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in &t.head {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            // Short cells (numbers, times, names) stay on one line.
            let class = if c.chars().count() > 40 {
                " class=\"wrap\""
            } else {
                ""
            };
            out.push_str(&format!("<td{class}>{}</td>", cell(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto; max-width: 1080px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-top: 1.6em; } h4 { margin: 1em 0 0.4em; }
p.lead { margin: 2px 0; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { white-space: normal; }
.bad { color: #b00020; }
figure.chart { margin: 4px 0; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
.source { color: #666; font-size: 0.85em; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; }
  figure.chart, table, tr { break-inside: avoid; }
  section.slo { break-before: page; }
}
";

/// Renders `r` as one HTML page; `source` says where the records came from.
pub fn render(r: &Report, source: &str) -> Result<String, ReportError> {
    let title = tables::title(r);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    for l in tables::period_lines(r) {
        out.push_str(&format!("<p class=\"lead\">{}</p>\n", esc(&l)));
    }
    out.push_str(&format!(
        "<p class=\"source\">Source: {}. Every number is in report.json.</p>\n",
        esc(source)
    ));
    out.push_str("<h2>SLOs</h2>\n");
    if r.slos.is_empty() {
        out.push_str("<p>No SLO is configured for these services.</p>\n");
    } else {
        table(&mut out, &tables::summary(r));
    }
    for t in &r.slos {
        out.push_str(&format!(
            "<section class=\"slo\" id=\"slo-{}-{}\" data-slo=\"{}\" data-service=\"{}\">\n<h3>{}</h3>\n",
            esc(&t.slo),
            esc(&t.service),
            esc(&t.slo),
            esc(&t.service),
            esc(&tables::target_heading(t))
        ));
        for l in tables::target_lines(t) {
            out.push_str(&format!("<p class=\"lead\">{}</p>\n", esc(&l)));
        }
        for c in target_charts(t, &r.axis)? {
            out.push_str(&format!(
                "<figure class=\"chart\" data-kind=\"{}\">\n{}\n</figure>\n",
                c.kind, c.svg
            ));
        }
        out.push_str("<h4>Burn rates</h4>\n");
        table(&mut out, &tables::target_policy(t));
        out.push_str("<h4>Deploys of the service and the services it calls</h4>\n");
        table(&mut out, &tables::target_deploys(t));
        out.push_str("<h4>Alerts</h4>\n");
        table(&mut out, &tables::target_alerts(t));
        out.push_str("</section>\n");
    }
    out.push_str("<section class=\"versions\" id=\"versions\">\n<h2>Versions</h2>\n");
    for (i, s) in r.services.iter().enumerate() {
        out.push_str(&format!("<h3>{}</h3>\n", esc(&s.service)));
        table(&mut out, &tables::versions(r, i));
    }
    out.push_str("</section>\n<section class=\"traceability\" id=\"traceability\">\n<h2>Traceability (worst first)</h2>\n");
    table(&mut out, &tables::traceability(r));
    out.push_str("</section>\n<section class=\"graph\" id=\"graph\">\n<h2>Service graph</h2>\n");
    table(&mut out, &tables::graph(r));
    out.push_str(
        "</section>\n<section class=\"deploys\" id=\"deploys\">\n<h2>Deploys in the period</h2>\n",
    );
    table(&mut out, &tables::deploys(r));
    out.push_str("</section>\n</body>\n</html>\n");
    Ok(out)
}
