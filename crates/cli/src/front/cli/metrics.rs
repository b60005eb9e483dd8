//! `orch metrics [text|json|prom]`: scan the store, print the report.

use orch_metrics::{Report, TextOptions};

use crate::app;
use crate::app::metrics::MetricsRequest;

use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{GlobalArgs, MetricsArgs, MetricsFormat};
use crate::front::out;

pub(crate) async fn run(global: &GlobalArgs, args: MetricsArgs) -> Result<Exit, AppError> {
    let request = MetricsRequest {
        since: args.since,
        agents: args.agents,
        workflows: args.workflows,
        rescan: args.rescan,
        no_index: args.no_index,
    };
    let report = app::metrics::report(&Setup::load(&global.settings())?, request).await?;
    match args.format {
        MetricsFormat::Text => {
            let colour = out::stdout_colour();
            let text = orch_metrics::render_text(
                &report,
                &TextOptions {
                    colour,
                    ..TextOptions::default()
                },
            );
            // The renderer cleans every value; its own colours must pass.
            if colour {
                out::print_raw(&text)?;
            } else {
                out::print(&text)?;
            }
        }
        MetricsFormat::Json => out::print_raw(&orch_metrics::render_json(&report))?,
        MetricsFormat::Prom => out::print_raw(&orch_metrics::render_prometheus(&report))?,
    }
    if args.format != MetricsFormat::Text {
        warn_about_problems(&report);
    }
    Ok(Exit::Ok)
}

/// The text report lists problems itself; for machine formats a person
/// watching the terminal still hears about them, on stderr.
fn warn_about_problems(report: &Report) {
    let p = &report.problems;
    let mut parts = Vec::new();
    if p.unreadable_files > 0 {
        parts.push(format!("{} unreadable file(s)", p.unreadable_files));
    }
    if p.ledger_bad_lines > 0 {
        parts.push(format!("{} bad ledger line(s)", p.ledger_bad_lines));
    }
    if !parts.is_empty() {
        out::note(&format!(
            "warning: {} in the store (listed under `problems`; `orch metrics` shows them)",
            parts.join(" and ")
        ));
    }
}
