//! The engine's side of packet identity (`podcap_identity`): the transform stage between the
//! merge and the encoder. Copies of one packet captured by two sources get the same
//! `epb_packetid` and their direction in `epb_flags`; `--dedup` keeps one copy; the one-way
//! times of linked pairs go to the summary and to `--latency-report FILE` (docs/design.md §11).

use podcap_format::Record;
use podcap_identity::report::LinkSummary;
use podcap_identity::{LinkOptions, Linker, Verdict, DEDUP_COMMENT};
use std::path::PathBuf;

/// What the command line asks of the stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkConfig {
    pub options: LinkOptions,
    /// `--latency-report FILE` (CSV or JSON by its extension).
    pub latency_report: Option<PathBuf>,
}

/// The stage as the engine runs it.
pub struct Stage {
    linker: Linker,
    report: Option<PathBuf>,
}

/// What a record becomes: dropped (a second copy under `--dedup`), or written with this packet
/// id.
pub enum Pass {
    Drop,
    Write(Option<u64>),
}

impl Stage {
    pub fn new(cfg: &LinkConfig) -> Self {
        Self {
            linker: Linker::new(cfg.options),
            report: cfg.latency_report.clone(),
        }
    }

    /// The section comment the output starts with.
    pub fn comment(cfg: Option<&LinkConfig>) -> Option<String> {
        cfg.filter(|c| c.options.dedup)
            .map(|_| DEDUP_COMMENT.to_string())
    }

    /// Looks at the next merged record (it may set the packet's direction flags).
    #[inline]
    pub fn pass(&mut self, src: usize, rec: &mut Record) -> Pass {
        match self.linker.observe(src, rec) {
            Verdict::Drop => Pass::Drop,
            Verdict::Write(id) => Pass::Write(id),
        }
    }

    /// Receives every linked pair (sender, receiver, both timestamps) from now on.
    pub fn add_observer(&mut self, o: Box<dyn podcap_identity::PairObserver>) {
        self.linker.add_observer(o);
    }

    /// Ends the stage: the summary, and the latency report written if asked for (its failure
    /// is returned as a message naming the file).
    /// `clocks`: the clock rows of the report (`podcap_identity::skew`).
    pub fn finish(
        self,
        sources: &[String],
        clocks: Vec<podcap_identity::report::Row>,
    ) -> (LinkSummary, Option<String>) {
        let mut summary = self.linker.finish();
        summary.clocks = clocks;
        let err = self.report.and_then(|path| {
            summary
                .write_report(&path, sources)
                .err()
                .map(|e| format!("writing the latency report {} failed: {e}", path.display()))
        });
        (summary, err)
    }
}
