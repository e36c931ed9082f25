//! Training hot path at the shapes of the speed targets and the seeds' table: forward
//! (prediction), forward + backward (gradients), a whole step (with Adam) for the small iris
//! network, digits 64-128-64 and the large network, plus one whole `train` epoch on digits.
//! Compare with bench/mlp_numpy.py, or run `npk bench train` for both side by side.

use std::{hint::black_box, path::Path, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use npk::{
    dataset::{Dataset, Standardizer},
    rng::Rng,
    train::{self, Mlp, OptimizerKind, TrainConfig, Trainer},
};

fn standardized(name: &str) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name);
    let data = Dataset::load_csv(&path).expect("shipped dataset loads");
    Standardizer::fit(&data).apply(&data)
}

/// (name, data file, hidden widths, batch).
const SHAPES: [(&str, &str, &[usize], usize); 3] = [
    ("small_3_4_5_b3", "iris.csv", &[3, 4, 5], 3),
    ("digits_64_128_64_b32", "digits.csv", &[64, 128, 64], 32),
    (
        "large_1600_2600_1600_2500_b10",
        "iris.csv",
        &[1600, 2600, 1600, 2500],
        10,
    ),
];

fn passes(c: &mut Criterion) {
    for (name, file, hidden, batch) in SHAPES {
        let data = standardized(file);
        let mlp = Mlp::new(
            data.num_features,
            hidden,
            data.num_classes,
            &mut Rng::new(1),
        );
        let optimizer = OptimizerKind::Adam;
        let mut trainer = Trainer::new(mlp.clone(), optimizer.build(&mlp, 0.001), batch);
        let x = &data.features[..batch * data.num_features];
        let y = &data.labels[..batch];
        let mut out = vec![0; batch];
        let mut group = c.benchmark_group(name);
        if name.starts_with("large") {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(5));
        }
        group.bench_function("forward", |b| {
            b.iter(|| trainer.predict(black_box(x), &mut out))
        });
        group.bench_function("gradients", |b| {
            b.iter(|| trainer.gradients(black_box(x), black_box(y)))
        });
        group.bench_function("step_adam", |b| {
            b.iter(|| trainer.step(black_box(x), black_box(y)))
        });
        group.finish();
    }
}

fn epoch(c: &mut Criterion) {
    let data = standardized("digits.csv");
    let config = TrainConfig {
        hidden: vec![64, 128, 64],
        epochs: 1,
        batch: 32,
        optimizer: OptimizerKind::Adam,
        lr: 0.01,
        seed: 1,
    };
    c.bench_function("train_epoch/digits_64_128_64_b32_adam", |b| {
        b.iter(|| train::train(black_box(&data), &config, |_| {}).expect("valid config"))
    });
}

criterion_group!(benches, passes, epoch);
criterion_main!(benches);
