//! `npk bench train`: the seeds' experiment table. A small and a large network, batch sizes,
//! training and inference, CPU and GPU, each timed in this process and, for the CPU rows, beside
//! the same run of bench/mlp_numpy.py started from here (same data, split, network, batch,
//! epochs and optimizer), so that the ratio compares two timings taken minutes apart at most.
//! The CPU training rows also score the trained model on the test rows: float, int8 (quantized
//! as `npk train --out` does, where the shape allows) and NumPy's float model.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use serde::{Deserialize, Serialize};

use crate::{
    dataset::{Dataset, DatasetError, Standardizer},
    pipeline::{self, schema_of},
    quantize::quantize,
    rng::Rng,
    train::{
        self, Mlp, OptimizerKind, TrainConfig, TrainError, Trainer,
        gpu::{self, GpuTrainError},
    },
};

/// One network of the table and how many epochs each of its rows runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    pub name: String,
    pub hidden: Vec<usize>,
    pub epochs: usize,
}

/// Everything one `npk bench train` run needs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub data: PathBuf,
    /// Rows to test on, a file of their own (MNIST's t10k); `None`: the split of `data`.
    pub test_data: Option<PathBuf>,
    pub nets: Vec<Net>,
    pub batches: Vec<usize>,
    pub lr: f32,
    pub seed: u64,
    /// The NumPy baseline: `python -- script ...`; `None` skips it.
    pub numpy: Option<(PathBuf, PathBuf)>,
}

/// The split of every run without a test file, as `npk train`'s default.
const TEST_SPLIT: f64 = 0.2;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Data(#[from] DatasetError),
    #[error("{net}")]
    Config {
        net: String,
        #[source]
        source: TrainError,
    },
    #[error("no batch sizes to time")]
    NoBatches,
    #[error("{}: {found} feature columns, but {} has {expected}", test.display(), data.display())]
    TestColumns {
        test: PathBuf,
        data: PathBuf,
        expected: usize,
        found: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Train,
    Infer,
}

/// Seconds per epoch (one pass over the training rows) and rows per second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Timing {
    pub seconds_per_epoch: f64,
    pub samples_per_second: f64,
}

impl Timing {
    fn new(seconds: f64, epochs: usize, rows: usize) -> Self {
        Self {
            seconds_per_epoch: seconds / epochs as f64,
            samples_per_second: (rows * epochs) as f64 / seconds,
        }
    }
}

/// One row of the table. `Err` holds why a timing is missing ("unavailable: ...").
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub net: String,
    pub hidden: Vec<usize>,
    pub batch: usize,
    /// Rows per step: `batch`, or every training row when there are fewer.
    pub rows_per_step: usize,
    pub mode: Mode,
    pub device: &'static str,
    pub epochs: usize,
    pub npk: Result<Timing, String>,
    /// CPU rows only.
    pub numpy: Option<Result<Timing, String>>,
    /// NumPy's seconds over npk's: how many times faster npk is.
    pub speedup: Option<f64>,
    /// The trained models' accuracy on the test rows (CPU training rows only).
    pub accuracy: Option<Accuracy>,
}

/// Test accuracy of one CPU training row's models.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Accuracy {
    pub npk_float: f64,
    /// `Err`: why it was not quantized (a shape npk does not quantize).
    pub npk_int8: Result<f64, String>,
    /// `None` without a NumPy run.
    pub numpy_float: Option<Result<f64, String>>,
}

/// The whole run: the table and what it ran on.
#[derive(Debug, Serialize)]
pub struct Report {
    pub data: PathBuf,
    pub train_rows: usize,
    pub test_rows: usize,
    pub gpu: Result<String, String>,
    pub rows: Vec<Row>,
}

/// The `--json` line of bench/mlp_numpy.py with `--time-infer`.
#[derive(Deserialize)]
struct NumpyReport {
    train_seconds: f64,
    infer_seconds: f64,
    float_accuracy: f64,
}

/// Runs every (net, batch) pair: CPU train, CPU infer, GPU train, GPU infer, then NumPy once for
/// the pair. Calls `on_row` as each row is done.
pub fn run(config: &BenchConfig, mut on_row: impl FnMut(&Row)) -> Result<Report, BenchError> {
    if config.batches.is_empty() {
        return Err(BenchError::NoBatches);
    }
    let data = Dataset::load(&config.data)?;
    let (train_raw, test_raw) = match &config.test_data {
        Some(path) => {
            let test = Dataset::load_for_model(path, data.num_classes)?;
            if test.num_features != data.num_features {
                return Err(BenchError::TestColumns {
                    test: path.clone(),
                    data: config.data.clone(),
                    expected: data.num_features,
                    found: test.num_features,
                });
            }
            (data, test)
        }
        None => data.split(TEST_SPLIT, config.seed)?,
    };
    let standardizer = Standardizer::fit(&train_raw);
    let train_set = standardizer.apply(&train_raw);
    let n = train_set.len();
    let gpu = gpu_offload::gpu_available().map_err(|e| gpu::GpuTrainError::from(e).to_string());
    let mut rows = Vec::new();
    for net in &config.nets {
        for &batch in &config.batches {
            let train_config = TrainConfig {
                hidden: net.hidden.clone(),
                epochs: net.epochs,
                batch,
                optimizer: OptimizerKind::Adam,
                lr: config.lr,
                seed: config.seed,
            };
            train_config
                .validate(train_set.num_features, train_set.num_classes)
                .map_err(|source| BenchError::Config {
                    net: net.name.clone(),
                    source,
                })?;
            let numpy = config
                .numpy
                .as_ref()
                .map(|(python, script)| run_numpy(python, script, config, &train_config));
            let row = |mode, device, npk: Result<Timing, String>| {
                let numpy = numpy.as_ref().filter(|_| device == "cpu").map(|r| {
                    r.as_ref().map_err(Clone::clone).map(|r| {
                        let seconds = match mode {
                            Mode::Train => r.train_seconds,
                            Mode::Infer => r.infer_seconds,
                        };
                        Timing::new(seconds, net.epochs, n)
                    })
                });
                let speedup = match (&npk, &numpy) {
                    (Ok(ours), Some(Ok(theirs))) => {
                        Some(theirs.seconds_per_epoch / ours.seconds_per_epoch)
                    }
                    _ => None,
                };
                Row {
                    net: net.name.clone(),
                    hidden: net.hidden.clone(),
                    batch,
                    rows_per_step: batch.min(n),
                    mode,
                    device,
                    epochs: net.epochs,
                    npk,
                    numpy,
                    speedup,
                    accuracy: None,
                }
            };
            let (cpu_train, mlp) = time_cpu_train(&train_set, &train_config);
            let accuracy = Accuracy {
                npk_float: mlp.accuracy(&standardizer.apply(&test_raw)),
                npk_int8: quantize(
                    &mlp,
                    &standardizer,
                    &train_raw,
                    schema_of(&train_raw.feature_names),
                )
                .map(|q| pipeline::score(&mlp, &standardizer, &q, &test_raw).quantized_accuracy)
                .map_err(|e| e.to_string()),
                numpy_float: numpy
                    .as_ref()
                    .map(|r| r.as_ref().map(|r| r.float_accuracy).map_err(Clone::clone)),
            };
            let cpu_infer = time_cpu_infer(&train_set, &train_config);
            // GPU rows only where there is a GPU: the report's `gpu` says why not otherwise.
            let gpu_rows = gpu.is_ok().then(|| {
                [
                    row(
                        Mode::Train,
                        "gpu",
                        time_gpu_train(&train_set, &train_config),
                    ),
                    row(
                        Mode::Infer,
                        "gpu",
                        time_gpu_infer(&train_set, &train_config),
                    ),
                ]
            });
            for r in [
                Row {
                    accuracy: Some(accuracy),
                    ..row(Mode::Train, "cpu", Ok(cpu_train))
                },
                row(Mode::Infer, "cpu", Ok(cpu_infer)),
            ]
            .into_iter()
            .chain(gpu_rows.into_iter().flatten())
            {
                on_row(&r);
                rows.push(r);
            }
        }
    }
    Ok(Report {
        data: config.data.clone(),
        train_rows: n,
        test_rows: test_raw.len(),
        gpu,
        rows,
    })
}

/// Training time as `npk train` measures it: from the first step to the end of the last epoch;
/// and the trained model.
fn time_cpu_train(data: &Dataset, config: &TrainConfig) -> (Timing, Mlp) {
    let mut seconds = 0.0;
    let mlp = train::train(data, config, |e| seconds = e.elapsed.as_secs_f64())
        .expect("validated by run");
    (Timing::new(seconds, config.epochs, data.len()), mlp)
}

fn time_gpu_train(data: &Dataset, config: &TrainConfig) -> Result<Timing, String> {
    let mut seconds = 0.0;
    gpu::train_gpu(data, config, |e| seconds = e.elapsed.as_secs_f64())
        .map_err(|e| e.to_string())?;
    Ok(Timing::new(seconds, config.epochs, data.len()))
}

/// The He-initialized network of `config`: inference time does not depend on the values.
fn initial_mlp(data: &Dataset, config: &TrainConfig) -> Mlp {
    Mlp::new(
        data.num_features,
        &config.hidden,
        data.num_classes,
        &mut Rng::new(config.seed),
    )
}

/// `config.epochs` passes of batched prediction over `data`'s rows, in order.
fn time_cpu_infer(data: &Dataset, config: &TrainConfig) -> Timing {
    let mlp = initial_mlp(data, config);
    let batch = config.batch.min(data.len());
    let mut trainer = Trainer::new(mlp.clone(), config.optimizer.build(&mlp, config.lr), batch);
    time_predict(data, config, batch, |x, out| {
        trainer.predict(x, out);
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {})
}

fn time_gpu_infer(data: &Dataset, config: &TrainConfig) -> Result<Timing, String> {
    let mlp = initial_mlp(data, config);
    let batch = config.batch.min(data.len());
    let mut gpu = gpu_offload::GpuTrainer::new(
        &gpu::to_gpu_layers(&mlp),
        gpu::gpu_optimizer(config.optimizer, config.lr),
        batch,
    )
    .map_err(|e| GpuTrainError::from(e).to_string())?;
    time_predict(data, config, batch, |x, out| gpu.predict(x, out))
        .map_err(|e| GpuTrainError::from(e).to_string())
}

/// Times `predict` over every batch of `data`, `config.epochs` times.
fn time_predict<E>(
    data: &Dataset,
    config: &TrainConfig,
    batch: usize,
    mut predict: impl FnMut(&[f32], &mut [u32]) -> Result<(), E>,
) -> Result<Timing, E> {
    let mut out = vec![0; batch];
    let d = data.num_features;
    let start = Instant::now();
    for _ in 0..config.epochs {
        for x in data.features.chunks(batch * d) {
            let m = x.len() / d;
            predict(x, &mut out[..m])?;
        }
    }
    Ok(Timing::new(
        start.elapsed().as_secs_f64(),
        config.epochs,
        data.len(),
    ))
}

/// Runs bench/mlp_numpy.py on the same configuration; `Err` says why there is no timing.
fn run_numpy(
    python: &Path,
    script: &Path,
    bench: &BenchConfig,
    config: &TrainConfig,
) -> Result<NumpyReport, String> {
    let hidden: Vec<String> = config.hidden.iter().map(usize::to_string).collect();
    let mut command = Command::new(python);
    command.arg("--").arg(script).arg("--data").arg(&bench.data);
    if let Some(test) = &bench.test_data {
        command.arg("--test-data").arg(test);
    }
    let out = command
        .args(["--hidden", &hidden.join(",")])
        .args(["--epochs", &config.epochs.to_string()])
        .args(["--batch", &config.batch.to_string()])
        .args(["--optimizer", &config.optimizer.to_string()])
        .args(["--lr", &config.lr.to_string()])
        .args(["--seed", &config.seed.to_string()])
        .args(["--test-split", &TEST_SPLIT.to_string()])
        .args(["--init", "numpy", "--time-infer", "--json"])
        .output()
        .map_err(|e| {
            format!(
                "unavailable: cannot run {} {}: {e}",
                python.display(),
                script.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "unavailable: {} {} failed ({}): {}",
            python.display(),
            script.display(),
            out.status,
            stderr.lines().last().unwrap_or("")
        ));
    }
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .map_err(|e| format!("unavailable: {} printed no report ({e})", script.display()))
}
