//! `npk verify`: kernel vs userspace reference, bit for bit, through BPF_PROG_TEST_RUN.

use anyhow::{Result, ensure};
use clap::Args;

use super::{Hidden, progress_bar};
use crate::{
    fixtures,
    kernel::{ProgramKind, config::DropMargin},
    noteln, outln, verify,
};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Hidden layer widths of the random packet model, e.g. 32,32.
    #[arg(long, default_value = "16,16")]
    hidden: Hidden,
    /// Frames to generate and run.
    #[arg(long, default_value_t = 10_000)]
    packets: u64,
    /// Seeds the random model and the generated frames.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Check this packet-feature model file instead of a random model.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Classes of the random model.
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// Check with this drop margin instead of the model's own (a random model's:
    /// `RANDOM_MODEL_DROP_MARGIN`, 500, which some drops reach and some do not), so that both
    /// verdicts of a drop class are checked.
    #[arg(long, value_name = "N")]
    drop_margin: Option<DropMargin>,
    /// Check the TC program instead of XDP.
    #[arg(long)]
    tc: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    ensure!((2..=16).contains(&args.classes), "--classes must be 2..=16");
    let mut model = match &args.model {
        Some(path) => crate::model_file::ModelFile::load(path)?.kernel_model()?,
        None => {
            let mut m = fixtures::random_packet_model(&args.hidden.0, args.classes, args.seed)?;
            m.header.drop_margin = fixtures::RANDOM_MODEL_DROP_MARGIN;
            m
        }
    };
    if let Some(DropMargin(margin)) = args.drop_margin {
        model.header.drop_margin = margin;
    }
    let kind = if args.tc {
        ProgramKind::Tc
    } else {
        ProgramKind::Xdp
    };
    let pb = progress_bar(args.packets, args.json);
    let report = verify::verify(&model, kind, args.packets, args.seed, |n| {
        pb.set_position(n)
    })?;
    pb.finish_and_clear();
    for p in &report.first_problems {
        noteln!("mismatch: {p}");
    }
    let printed = if args.json {
        outln!("{}", serde_json::to_string(&report)?)
    } else {
        outln!(
            "{} frames ({} classified, {} rejected by the parser; drop margin {}: {} dropped, {} \
             passed as unsure): {} mismatches, {} errors",
            report.packets,
            report.valid,
            report.rejected,
            model.header.drop_margin,
            report.dropped,
            report.unsure,
            report.mismatches,
            report.errors
        )
    };
    // A disagreement is the result, whether or not the report could be printed.
    ensure!(
        report.mismatches == 0 && report.errors == 0,
        "kernel and reference disagree ({} mismatches, {} errors)",
        report.mismatches,
        report.errors
    );
    Ok(printed?)
}
