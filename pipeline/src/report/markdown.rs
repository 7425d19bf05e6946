//! `report.md`: the report's tables in GitHub-flavoured Markdown, for a
//! postmortem or a wiki page.

use super::model::Report;
use super::tables::{self, Table};

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, t: &Table) {
    if t.rows.is_empty() {
        out.push_str("None.\n\n");
        return;
    }
    out.push_str(&format!("| {} |\n", t.head.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        t.head.iter().map(|_| "---|").collect::<String>()
    ));
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
}

/// Renders `r` as Markdown.
pub fn render(r: &Report) -> String {
    let mut out = format!("# {}\n\n", tables::title(r));
    for l in tables::period_lines(r) {
        out.push_str(&format!("{l}  \n"));
    }
    out.push_str("\n## SLOs\n\n");
    if r.slos.is_empty() {
        out.push_str("No SLO is configured for these services.\n\n");
    } else {
        table(&mut out, &tables::summary(r));
    }
    for t in &r.slos {
        out.push_str(&format!("### {}\n\n", tables::target_heading(t)));
        for l in tables::target_lines(t) {
            out.push_str(&format!("{l}  \n"));
        }
        out.push_str("\n#### Burn rates\n\n");
        table(&mut out, &tables::target_policy(t));
        out.push_str("#### Deploys of the service and the services it calls\n\n");
        table(&mut out, &tables::target_deploys(t));
        out.push_str("#### Alerts\n\n");
        table(&mut out, &tables::target_alerts(t));
    }
    out.push_str("## Versions\n\n");
    for (i, s) in r.services.iter().enumerate() {
        out.push_str(&format!("### {}\n\n", s.service));
        table(&mut out, &tables::versions(r, i));
    }
    out.push_str("## Traceability (worst first)\n\n");
    table(&mut out, &tables::traceability(r));
    out.push_str("## Service graph\n\n");
    table(&mut out, &tables::graph(r));
    out.push_str("## Deploys in the period\n\n");
    table(&mut out, &tables::deploys(r));
    out
}
