//! The progress bar (on standard error, drawn only on a terminal): one
//! step per measurement, with what is being measured.

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress(ProgressBar);

impl Progress {
    /// A bar of `steps` steps.
    pub fn new(steps: u64) -> Progress {
        let bar = ProgressBar::new(steps);
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} (eta {eta}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        Progress(bar)
    }

    /// A step begins: says what it measures.
    pub fn step(&self, what: String) {
        self.0.set_message(what);
    }

    /// The step is done.
    pub fn done(&self) {
        self.0.inc(1);
    }

    /// Prints a note to standard error, above the bar.
    pub fn note(&self, note: &str) {
        self.0.suspend(|| eprintln!("ouro-bench: {note}"));
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
