//! The progress bar over chunks and rows (indicatif), plain lines when stderr is not a terminal.

use std::sync::atomic::{AtomicU64, Ordering};

use backfill_core::ids::RunId;
use backfill_core::runner::{ProgressListener, RunEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws chunks done / total, rows, rate and ETA.
#[derive(Debug)]
pub(crate) struct Bar {
    bar: ProgressBar,
    rows: AtomicU64,
    staged: AtomicU64,
    plain: bool,
}

impl Bar {
    pub(crate) fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let plain = bar.is_hidden();
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} chunks, {msg} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        Self {
            bar,
            rows: AtomicU64::new(0),
            staged: AtomicU64::new(0),
            plain,
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn line(&self, s: String) {
        if self.plain {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }
}

impl ProgressListener for Bar {
    fn event(&self, run_id: &RunId, event: &RunEvent) {
        match event {
            RunEvent::Planned { total, done } => {
                self.bar.set_length(*total as u64);
                self.bar.set_position(*done as u64);
                self.line(format!(
                    "{run_id}: {total} chunks planned, {done} already done"
                ));
            }
            RunEvent::ChunkStaged {
                label,
                rows,
                done,
                total,
            } => {
                let all = self.rows.fetch_add(*rows, Ordering::Relaxed) + rows;
                self.bar.set_position(*done as u64);
                let secs = self.bar.elapsed().as_secs_f64().max(1e-3);
                let rate = format!("{all} rows, {:.0} rows/s", all as f64 / secs);
                if self.plain {
                    // The chunks staged by this process set the pace for the ones left.
                    let left = total.saturating_sub(*done) as f64;
                    let staged = self.staged.fetch_add(1, Ordering::Relaxed) + 1;
                    let eta = left * secs / staged as f64;
                    eprintln!(
                        "chunk {done:>3}/{total} {label}: {rows} rows staged ({rate}, eta {eta:.0} s)"
                    );
                }
                self.bar.set_message(rate);
            }
            RunEvent::ChunkFailed { label, error } => {
                self.line(format!("chunk {label} failed: {error}"));
            }
            RunEvent::State(s) => self.line(format!("{run_id} -> {s}")),
            _ => {}
        }
    }
}
